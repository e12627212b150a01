"""What an import file is: compression, encoding, format and CSV delimiter,
decided by reading it (`detect`), and the file opened as text the way it was
decided (`open_text`). Also the file's fingerprint (`fingerprint`), recorded
when a command-line import starts, so a resumed import can check it reads
the same file.

Nothing here knows about fields or rows (see `imports_parse`).
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import os
from dataclasses import dataclass
from typing import IO, Final, Literal

ImportFormat = Literal["csv", "jsonl"]

SAMPLE_BYTES: Final = 64 * 1024
# The head of the file a fingerprint hashes: enough to tell two exports of
# one database apart (they differ in the first rows), cheap on any file.
FINGERPRINT_BYTES: Final = 1024 * 1024
_READ_BLOCK: Final = 1024 * 1024
_DELIMITERS: Final = (",", ";", "\t", "|")
_DELIMITER_NAMES: Final = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_GZIP_MAGIC: Final = b"\x1f\x8b"


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (empty, undecodable, unknown
    columns ...); the message says what and where."""


@dataclass(frozen=True, slots=True)
class Detected:
    format: ImportFormat
    compression: str | None
    encoding: str
    delimiter: str | None
    # Newlines in the file: an estimate of the rows (exact for plain files).
    lines: int | None


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """The file as stored (compressed bytes, not their content): its size and
    the SHA-256 of its first `FINGERPRINT_BYTES` bytes."""

    size: int
    head_sha256: str


def fingerprint(source: IO[bytes]) -> Fingerprint:
    """`source`'s size and head hash; leaves it at position 0."""
    source.seek(0, os.SEEK_END)
    size = source.tell()
    source.seek(0)
    digest = hashlib.sha256(source.read(FINGERPRINT_BYTES)).hexdigest()
    source.seek(0)
    return Fingerprint(size, digest)


def open_decompressed(source: IO[bytes]) -> tuple[IO[bytes], str | None]:
    """The byte stream to parse: `source` itself, or its gzip content when it
    starts with the gzip magic bytes (whatever its name says)."""
    source.seek(0)
    magic = source.read(2)
    source.seek(0)
    if magic == _GZIP_MAGIC:
        unpacked: IO[bytes] = gzip.GzipFile(fileobj=source, mode="rb")  # type: ignore[assignment]
        return unpacked, "gzip"
    return source, None


def _bom_encoding(head: bytes) -> str | None:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def _utf8_ok(stream: IO[bytes], head: bytes) -> tuple[bool, int]:
    """Whether the whole stream is UTF-8, and its newline count."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0
    block = head
    try:
        while block:
            decoder.decode(block)
            lines += block.count(b"\n")
            block = stream.read(_READ_BLOCK)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False, 0
    return True, lines


def _count_lines(stream: IO[bytes], head: bytes, encoding: str) -> int:
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    lines = 0
    block = head
    while block:
        lines += decoder.decode(block).count("\n")
        block = stream.read(_READ_BLOCK)
    return lines


def _utf8_head_ok(head: bytes) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError:
        return False
    return True


def detect(
    source: IO[bytes],
    *,
    filename: str | None = None,
    format: ImportFormat | None = None,
    full: bool = True,
) -> Detected:
    """Read the whole file once: compression (gzip by magic bytes), encoding
    (a BOM says UTF-8 or UTF-16; otherwise UTF-8 when every byte decodes as
    UTF-8, else Windows-1252), format (CSV or JSON lines, by name or by the
    first character) and the CSV delimiter (, ; tab or |, from the header).
    With `full=False` only the first 64 KiB are read (a quick look at upload
    time; the run decides again on the whole file)."""
    stream, compression = open_decompressed(source)
    lines: int | None = None
    try:
        head = stream.read(SAMPLE_BYTES)
        if not head.strip(b" \t\r\n\x00\xef\xbb\xbf\xff\xfe"):
            raise ImportFileError("the file is empty")
        encoding = _bom_encoding(head)
        if not full:
            encoding = encoding or ("utf-8" if _utf8_head_ok(head) else "windows-1252")
        elif encoding is not None:
            lines = _count_lines(stream, head, encoding)
        else:
            ok, count = _utf8_ok(stream, head)
            encoding = "utf-8" if ok else "windows-1252"
            lines = count if ok else None
        sample = _decode_sample(head, encoding)
    except (OSError, EOFError) as exc:
        raise ImportFileError(f"the file cannot be read: {exc}") from None
    finally:
        if stream is not source:
            stream.close()
    if full and lines is None:
        source.seek(0)
        stream, _ = open_decompressed(source)
        try:
            lines = _count_lines(stream, b"", "cp1252")
        finally:
            if stream is not source:
                stream.close()
    source.seek(0)
    fmt = format or _guess_format(filename, sample)
    delimiter = _sniff_delimiter(sample) if fmt == "csv" else None
    return Detected(fmt, compression, encoding, delimiter, lines)


def _decode_sample(head: bytes, encoding: str) -> str:
    codec = "cp1252" if encoding == "windows-1252" else encoding
    decoder = codecs.getincrementaldecoder(codec)(errors="replace")
    return decoder.decode(head)


def _guess_format(filename: str | None, sample: str) -> ImportFormat:
    name = (filename or "").lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    return "jsonl" if sample.lstrip("\ufeff \t\r\n").startswith("{") else "csv"


def _sniff_delimiter(sample: str) -> str:
    """The candidate that splits the header line into the most columns
    (outside quotes); a comma when the header has a single column."""
    header = sample.lstrip("\ufeff").split("\n", 1)[0]
    counts = dict.fromkeys(_DELIMITERS, 0)
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def open_text(source: IO[bytes], detected: Detected) -> io.TextIOWrapper:
    """The file as text lines, decoded the way `detect` decided."""
    stream, _ = open_decompressed(source)
    codec = "cp1252" if detected.encoding == "windows-1252" else detected.encoding
    # cp1252 leaves five bytes undefined; they become U+FFFD rather than
    # failing a file a spreadsheet wrote.
    errors = "replace" if codec == "cp1252" else "strict"
    return io.TextIOWrapper(stream, encoding=codec, errors=errors, newline="")


def describe(detected: Detected) -> str:
    """`CSV, utf-8, semicolon-separated, gzip`: what the importer read the file as."""
    parts = [detected.format.upper(), detected.encoding]
    if detected.delimiter:
        parts.append(f"{_DELIMITER_NAMES[detected.delimiter]}-separated")
    if detected.compression:
        parts.append(detected.compression)
    return ", ".join(parts)
