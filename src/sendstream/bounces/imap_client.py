"""A small asyncio IMAP4rev1 client: what reading a bounce folder needs and
nothing more (RFC 3501, IDLE RFC 2177, MOVE RFC 6851, UIDPLUS RFC 4315,
XOAUTH2 as Google and Microsoft document it).

Why not aioimaplib: it has no STARTTLS, a failed XOAUTH2 (the server's
`+ <error>` continuation) leaves its command waiting until the timeout, and a
dropped connection surfaces only as that timeout. Here every read has a
deadline, end of stream raises `ImapConnectionLost` at once, literals are
bounded (`max_literal`), and responses are parsed into tokens rather than
matched with regular expressions.

TLS is always verified (`ssl_context` adds trusted CAs, never disables
checks); `address` lets the caller connect to an address it has vetted
while TLS still checks the certificate against `host`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
from dataclasses import dataclass, field
from typing import Any, Final

# Longest response line (without literals) accepted from a server.
MAX_LINE: Final = 1 << 20
_LITERAL_AT_END = re.compile(rb"\{(\d+)\+?\}\r\n$")
_CODE = re.compile(r"^\[([^\]]*)\]\s*")
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]\r\n')


class ImapError(Exception):
    """Anything that went wrong talking to the server."""


class ImapConnectionLost(ImapError):
    """The connection ended or stopped answering: connect again."""


class ImapProtocolError(ImapConnectionLost):
    """The server said something this client cannot follow (too long, too
    large, not IMAP): the connection is unusable."""


class ImapCommandFailed(ImapError):
    """A tagged NO or BAD. `code` is the response code (`AUTHENTICATIONFAILED`,
    `TRYCREATE`, ...), upper case, or ''."""

    def __init__(self, command: str, status: str, code: str, text: str) -> None:
        super().__init__(f"{command} failed: {status} {f'[{code}] ' if code else ''}{text}".strip())
        self.command = command
        self.status = status
        self.code = code
        self.text = text


class ImapAuthenticationFailed(ImapCommandFailed):
    pass


@dataclass(frozen=True, slots=True)
class Literal:
    data: bytes


Token = bytes | Literal | list["Token"] | None


@dataclass(slots=True)
class Response:
    status: str
    code: str
    text: str
    # Untagged responses as token lists (the leading `*` dropped).
    untagged: list[list[Token]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Selected:
    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclass(frozen=True, slots=True)
class Fetched:
    uid: int
    size: int | None
    # BODY[...] sections by their name as sent back, e.g. b"BODY[]".
    sections: dict[bytes, bytes]


def tokenize(line: bytes, literals: list[bytes]) -> list[Token]:
    """One response line (literals cut out, `{n}` left in their place) as
    nested tokens: atoms and quoted strings as bytes, literals as `Literal`,
    parenthesised lists as lists, NIL as None."""
    pos = 0
    lit = iter(literals)
    stack: list[list[Token]] = [[]]
    n = len(line)
    while pos < n:
        c = line[pos]
        if c == 0x20:
            pos += 1
        elif c == 0x28:  # (
            stack.append([])
            pos += 1
        elif c == 0x29:  # )
            if len(stack) == 1:
                raise ImapProtocolError(f"unbalanced ')' in {line[:200]!r}")
            inner = stack.pop()
            stack[-1].append(inner)
            pos += 1
        elif c == 0x22:  # "
            out = bytearray()
            pos += 1
            while pos < n and line[pos] != 0x22:
                if line[pos] == 0x5C and pos + 1 < n:
                    pos += 1
                out.append(line[pos])
                pos += 1
            pos += 1
            stack[-1].append(bytes(out))
        elif c == 0x7B:  # {n}
            end = line.find(b"}", pos)
            if end < 0:
                raise ImapProtocolError(f"broken literal in {line[:200]!r}")
            data = next(lit, None)
            if data is None:
                raise ImapProtocolError("a literal is missing its data")
            stack[-1].append(Literal(data))
            pos = end + 1
        else:
            start = pos
            depth = 0
            while pos < n:
                b = line[pos]
                if b == 0x5B:  # [ ... ] may hold spaces and parentheses: BODY[HEADER.FIELDS (A B)]
                    depth += 1
                elif b == 0x5D and depth:
                    depth -= 1
                elif depth == 0 and b in (0x20, 0x28, 0x29):
                    break
                pos += 1
            atom = line[start:pos]
            stack[-1].append(None if atom.upper() == b"NIL" else atom)
    if len(stack) != 1:
        raise ImapProtocolError(f"unbalanced '(' in {line[:200]!r}")
    return stack[0]


def quote(value: str) -> str:
    """An IMAP quoted string (the caller has checked there is no CR/LF)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_mailbox(name: str) -> str:
    """A folder name in IMAP's modified UTF-7 (RFC 3501 5.1.3), quoted."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return quote("".join(out))


def _as_int(token: Token) -> int | None:
    if isinstance(token, bytes) and token.isdigit():
        return int(token)
    return None


class ImapClient:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: str = "implicit",
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 60.0,
        max_literal: int = 30 * 1024 * 1024,
        address: str | None = None,
    ) -> None:
        if tls not in ("implicit", "starttls"):
            raise ValueError(f"tls must be implicit or starttls, not {tls!r}")
        self.host = host
        self.port = port
        self.tls = tls
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.timeout = timeout
        self.max_literal = max_literal
        self.address = address or host
        self.capabilities: frozenset[str] = frozenset()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tag = 0

    # --- connection

    async def connect(self) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.address,
                    self.port,
                    ssl=self.ssl_context if self.tls == "implicit" else None,
                    server_hostname=self.host if self.tls == "implicit" else None,
                    limit=MAX_LINE,
                ),
                self.timeout,
            )
        except TimeoutError as exc:
            raise ImapConnectionLost(f"connecting to {self.host}:{self.port} timed out") from exc
        except ssl.SSLError as exc:
            raise ImapError(f"TLS with {self.host}:{self.port} failed: {exc}") from exc
        except OSError as exc:
            raise ImapConnectionLost(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        greeting, _ = await self._read_line()
        if greeting.startswith(b"* BYE"):
            raise ImapConnectionLost(f"the server refused the connection: {greeting[:200]!r}")
        if not greeting.startswith(b"* OK") and not greeting.startswith(b"* PREAUTH"):
            raise ImapProtocolError(f"not an IMAP greeting: {greeting[:200]!r}")
        await self.capability()
        if self.tls == "starttls":
            if "STARTTLS" not in self.capabilities:
                raise ImapError(f"{self.host}:{self.port} does not offer STARTTLS")
            await self.command("STARTTLS")
            assert self._writer is not None  # noqa: S101
            try:
                await asyncio.wait_for(
                    self._writer.start_tls(self.ssl_context, server_hostname=self.host),
                    self.timeout,
                )
            except ssl.SSLError as exc:
                raise ImapError(f"TLS with {self.host}:{self.port} failed: {exc}") from exc
            except (TimeoutError, OSError) as exc:
                raise ImapConnectionLost(f"STARTTLS with {self.host} failed: {exc}") from exc
            await self.capability()

    async def close(self) -> None:
        """Close without a word (use `logout` for a polite end)."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)

    async def logout(self) -> None:
        with contextlib.suppress(ImapError, OSError, TimeoutError):
            await asyncio.wait_for(self.command("LOGOUT"), 5)
        await self.close()

    # --- reading and writing

    async def _read_raw_line(self) -> bytes:
        if self._reader is None:
            raise ImapConnectionLost("not connected")
        try:
            return await asyncio.wait_for(self._reader.readuntil(b"\r\n"), self.timeout)
        except asyncio.IncompleteReadError as exc:
            raise ImapConnectionLost("the server closed the connection") from exc
        except asyncio.LimitOverrunError as exc:
            raise ImapProtocolError("a response line longer than 1 MiB") from exc
        except TimeoutError as exc:
            raise ImapConnectionLost(f"no answer within {self.timeout:g} s") from exc
        except OSError as exc:
            raise ImapConnectionLost(f"the connection failed: {exc}") from exc

    async def _read_line(self) -> tuple[bytes, list[bytes]]:
        """One logical response line, literals read out of it."""
        parts: list[bytes] = []
        literals: list[bytes] = []
        while True:
            raw = await self._read_raw_line()
            match = _LITERAL_AT_END.search(raw)
            if match is None:
                parts.append(raw[:-2])
                return b"".join(parts), literals
            size = int(match.group(1))
            if size > self.max_literal:
                raise ImapProtocolError(f"a literal of {size} bytes (limit {self.max_literal})")
            parts.append(raw[:-2])
            assert self._reader is not None  # noqa: S101
            try:
                literals.append(
                    await asyncio.wait_for(self._reader.readexactly(size), self.timeout)
                )
            except asyncio.IncompleteReadError as exc:
                raise ImapConnectionLost("the server closed the connection") from exc
            except TimeoutError as exc:
                raise ImapConnectionLost(f"no answer within {self.timeout:g} s") from exc

    async def _write(self, data: bytes) -> None:
        if self._writer is None:
            raise ImapConnectionLost("not connected")
        try:
            self._writer.write(data)
            await asyncio.wait_for(self._writer.drain(), self.timeout)
        except (OSError, TimeoutError) as exc:
            raise ImapConnectionLost(f"the connection failed: {exc}") from exc

    def _next_tag(self) -> str:
        self._tag += 1
        return f"S{self._tag}"

    async def command(self, text: str, *, on_continuation: bytes = b"\r\n") -> Response:
        """Send one command and read up to its tagged answer; NO/BAD raise
        `ImapCommandFailed`. A continuation request is answered with
        `on_continuation` (an empty line cancels a SASL exchange)."""
        tag = self._next_tag()
        await self._write(f"{tag} {text}\r\n".encode())
        return await self._finish(tag, text.split(" ", 1)[0].upper(), on_continuation)

    async def _finish(self, tag: str, name: str, on_continuation: bytes) -> Response:
        untagged: list[list[Token]] = []
        prefix = tag.encode() + b" "
        while True:
            line, literals = await self._read_line()
            if line.startswith(b"* "):
                tokens = tokenize(line[2:], literals)
                untagged.append(tokens)
                if tokens and isinstance(tokens[0], bytes) and tokens[0].upper() == b"CAPABILITY":
                    self._set_capabilities(tokens[1:])
            elif line.startswith(b"+"):
                await self._write(on_continuation)
            elif line.startswith(prefix):
                status, _, rest = line[len(prefix) :].decode("utf-8", "replace").partition(" ")
                status = status.upper()
                code = ""
                match = _CODE.match(rest)
                if match:
                    code = match.group(1).split(" ", 1)[0].upper()
                    rest = rest[match.end() :]
                if status == "OK":
                    return Response(status, code, rest, untagged)
                if code in ("AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED") or name in (
                    "LOGIN",
                    "AUTHENTICATE",
                ):
                    raise ImapAuthenticationFailed(name, status, code, rest)
                raise ImapCommandFailed(name, status, code, rest)
            else:
                raise ImapProtocolError(f"unexpected response {line[:200]!r}")

    def _set_capabilities(self, tokens: list[Token]) -> None:
        self.capabilities = frozenset(
            t.decode("ascii", "replace").upper() for t in tokens if isinstance(t, bytes)
        )

    # --- commands

    async def capability(self) -> frozenset[str]:
        await self.command("CAPABILITY")
        return self.capabilities

    async def login(self, username: str, password: str) -> None:
        if "LOGINDISABLED" in self.capabilities:
            raise ImapError("the server refuses LOGIN on this connection (LOGINDISABLED)")
        if any(c in username + password for c in "\r\n\x00"):
            raise ImapError("the username or password holds a line break or NUL")
        if all(0x20 <= ord(c) <= 0x7E for c in username + password):
            await self.command(f"LOGIN {quote(username)} {quote(password)}")
        else:
            # Non-ASCII: AUTHENTICATE PLAIN carries UTF-8 (RFC 4616).
            blob = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
            await self._authenticate("PLAIN", blob)
        await self.capability()

    async def xoauth2(self, username: str, access_token: str) -> None:
        """SASL XOAUTH2: `user=<name>^Aauth=Bearer <token>^A^A`, base64."""
        blob = base64.b64encode(
            f"user={username}\x01auth=Bearer {access_token}\x01\x01".encode()
        ).decode()
        await self._authenticate("XOAUTH2", blob)
        await self.capability()

    async def _authenticate(self, mechanism: str, blob: str) -> None:
        if "SASL-IR" in self.capabilities:
            await self.command(f"AUTHENTICATE {mechanism} {blob}")
            return
        tag = self._next_tag()
        await self._write(f"{tag} AUTHENTICATE {mechanism}\r\n".encode())
        line, _ = await self._read_line()
        if not line.startswith(b"+"):
            # A tagged refusal straight away (mechanism not offered).
            text = line.decode("utf-8", "replace")
            raise ImapAuthenticationFailed("AUTHENTICATE", "NO", "", text)
        await self._write(blob.encode() + b"\r\n")
        await self._finish(tag, "AUTHENTICATE", b"\r\n")

    async def select(self, folder: str) -> Selected:
        response = await self.command(f"SELECT {encode_mailbox(folder)}")
        uidvalidity: int | None = None
        uidnext: int | None = None
        exists = 0
        for tokens in response.untagged:
            if len(tokens) >= 2 and tokens[1] == b"EXISTS":
                exists = _as_int(tokens[0]) or 0
            code = tokens[1] if len(tokens) >= 2 and tokens[0] == b"OK" else None
            if isinstance(code, bytes) and code.startswith(b"[") and code.endswith(b"]"):
                words = code[1:-1].split()
                if len(words) == 2 and words[1].isdigit():
                    if words[0].upper() == b"UIDVALIDITY":
                        uidvalidity = int(words[1])
                    elif words[0].upper() == b"UIDNEXT":
                        uidnext = int(words[1])
        if uidvalidity is None:
            raise ImapProtocolError(f"SELECT {folder!r} gave no UIDVALIDITY")
        return Selected(uidvalidity, uidnext, exists)

    async def create(self, folder: str) -> None:
        """Create a folder; one that exists already is fine."""
        try:
            await self.command(f"CREATE {encode_mailbox(folder)}")
        except ImapCommandFailed as exc:
            if exc.code != "ALREADYEXISTS" and "exist" not in exc.text.lower():
                raise

    async def uid_search(self, criteria: str) -> list[int]:
        response = await self.command(f"UID SEARCH {criteria}")
        found: list[int] = []
        for tokens in response.untagged:
            if tokens and tokens[0] == b"SEARCH":
                found.extend(n for n in (_as_int(t) for t in tokens[1:]) if n is not None)
        return sorted(set(found))

    async def uid_fetch(self, uids: str, items: str) -> dict[int, Fetched]:
        response = await self.command(f"UID FETCH {uids} ({items})")
        out: dict[int, Fetched] = {}
        for tokens in response.untagged:
            if len(tokens) < 3 or tokens[1] != b"FETCH" or not isinstance(tokens[2], list):
                continue
            data = tokens[2]
            uid: int | None = None
            size: int | None = None
            sections: dict[bytes, bytes] = {}
            for i in range(0, len(data) - 1, 2):
                key, value = data[i], data[i + 1]
                if not isinstance(key, bytes):
                    continue
                upper = key.upper()
                if upper == b"UID":
                    uid = _as_int(value)
                elif upper == b"RFC822.SIZE":
                    size = _as_int(value)
                elif upper.startswith(b"BODY["):
                    if isinstance(value, Literal):
                        sections[upper] = value.data
                    elif isinstance(value, bytes):
                        sections[upper] = value
            if uid is not None:
                previous = out.get(uid)
                if previous is not None:
                    sections = {**previous.sections, **sections}
                    size = size if size is not None else previous.size
                out[uid] = Fetched(uid, size, sections)
        return out

    async def uid_store(self, uids: str, flags: str) -> None:
        await self.command(f"UID STORE {uids} +FLAGS.SILENT ({flags})")

    async def uid_move(self, uids: str, folder: str) -> None:
        """MOVE where offered, else COPY, flag \\Deleted and expunge (only
        these UIDs where UIDPLUS allows it)."""
        target = encode_mailbox(folder)
        if "MOVE" in self.capabilities:
            await self.command(f"UID MOVE {uids} {target}")
            return
        await self.command(f"UID COPY {uids} {target}")
        await self.uid_delete(uids)

    async def uid_delete(self, uids: str) -> None:
        await self.uid_store(uids, "\\Deleted")
        if "UIDPLUS" in self.capabilities:
            await self.command(f"UID EXPUNGE {uids}")
        else:
            await self.command("EXPUNGE")

    async def noop(self) -> Response:
        return await self.command("NOOP")

    async def idle(self, seconds: float, stop: asyncio.Event) -> bool:
        """IDLE until the folder reports new mail (True), `seconds` pass or
        `stop` is set (False); always ends the IDLE with DONE and reads its
        tagged answer, so the connection is ready for the next command."""
        if "IDLE" not in self.capabilities:
            raise ImapError("the server does not offer IDLE")
        tag = self._next_tag()
        await self._write(f"{tag} IDLE\r\n".encode())
        prefix = tag.encode() + b" "
        while True:  # up to the continuation
            line, _ = await self._read_line()
            if line.startswith(b"+"):
                break
            if line.startswith(prefix):
                raise ImapCommandFailed("IDLE", "NO", "", line.decode("utf-8", "replace"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        news = False
        stopper: asyncio.Future[object] = asyncio.ensure_future(stop.wait())
        pending: asyncio.Future[tuple[bytes, list[bytes]]] | None = None
        try:
            while not news and not stop.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                if pending is None:
                    pending = asyncio.ensure_future(self._idle_line(remaining))
                waiting: set[asyncio.Future[Any]] = {pending, stopper}
                done, _ = await asyncio.wait(
                    waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                if pending in done:
                    line, _ = pending.result()
                    pending = None
                    if line.startswith(b"* ") and re.match(rb"^\* \d+ (EXISTS|RECENT)", line):
                        news = True
                    elif line.startswith(b"* BYE"):
                        raise ImapConnectionLost(f"the server said {line[:200]!r}")
            await self._write(b"DONE\r\n")
            while True:
                if pending is not None:
                    try:
                        line, _ = await asyncio.wait_for(pending, self.timeout)
                    except TimeoutError as exc:
                        raise ImapConnectionLost("no answer to DONE") from exc
                    finally:
                        pending = None
                else:
                    line, _ = await self._read_line()
                if line.startswith(prefix):
                    return news
                if re.match(rb"^\* \d+ (EXISTS|RECENT)", line):
                    news = True
        finally:
            stopper.cancel()
            if pending is not None:
                pending.cancel()

    async def _idle_line(self, seconds: float) -> tuple[bytes, list[bytes]]:
        """A line read while idling, allowed to take the whole IDLE period."""
        saved = self.timeout
        self.timeout = max(seconds, saved)
        try:
            return await self._read_line()
        finally:
            self.timeout = saved
