"""MIME building and DKIM signing: Sendstream's hot path against stdlib + dkimpy.

    .venv/bin/python bench/mime_dkim.py [--messages 20000] [--sample 2000]
                                        [--baseline-messages 1000]

Builds N personalised messages of about 10 KB (text and HTML, a non-ASCII
display name and subject, List-Unsubscribe headers) with `mime.build` and
signs each with RSA-2048, then with Ed25519; dual signing and the bare RSA
operation are timed on the first `--sample` of them. Then the first
`--baseline-messages` are built and signed the naive way: stdlib
`EmailMessage` and `dkimpy` (relaxed/relaxed, RSA-2048, the same signed
fields), which is over ten times slower, hence the smaller count; every
figure is per message, so the counts do not bias them. One message of each
kind is verified with dkimpy first, so the timings are of correct output.
About 40 s with the defaults on the 2-core machine.

Single process, one core. The last line printed is one flat JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.headerregistry import Address as StdAddress
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

import dkim as dkimpy  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from support import log

from sendstream.delivery.dkim import (
    SIGNED_HEADERS,
    DkimKey,
    generate_ed25519_key,
    generate_rsa_key,
    sign,
)
from sendstream.delivery.mime import Address, MessageParts, build

DOMAIN = "news.example.com"
DATE = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
_ROW = (
    '<tr><td style="padding:8px 12px;font-family:Arial,sans-serif;color:#333">'
    "<b>{title}</b> — ab {price} €<br>"
    '<a href="https://shop.example.com/p/{item}?utm_source=newsletter&amp;r={n}">Jetzt ansehen</a>'
    "</td></tr>\n"
)


def personalised(n: int) -> dict[str, Any]:
    """The per-recipient content of message n (about 10 KB once encoded)."""
    name = f"José Müller-Łukasiewicz {n}"
    items = [
        (f"Artikel {n % 97}-{i}", f"{(n + i) % 90 + 9},99", (n * 7 + i) % 5000) for i in range(30)
    ]
    html = (
        f"<html><body><p>Hallo {name},</p>\n<p>unsere Auswahl für Sie:</p>\n<table>\n"
        + "".join(_ROW.format(title=t, price=p, item=i, n=n) for t, p, i in items)
        + "</table>\n<p>Viele Grüße<br>Ihr Team</p></body></html>\n"
    )
    text = (
        f"Hallo {name},\n\nunsere Auswahl für Sie:\n\n"
        + "".join(f"* {t} — ab {p} €: https://shop.example.com/p/{i}?r={n}\n" for t, p, i in items)
        + "\nViele Grüße\nIhr Team\n"
    )
    return {
        "name": name,
        "address": f"kunde{n}@example.org",
        "subject": f"{name.split()[0]}, Ihre Angebote der Woche — bis zu 30 % günstiger",
        "text": text,
        "html": html,
        "unsubscribe": f"<https://t.example.com/u/{n:08x}>, <mailto:u+{n:08x}@{DOMAIN}>",
        "message_id": f"<{n:012x}.bench@{DOMAIN}>",
    }


def sendstream_parts(c: dict[str, Any]) -> MessageParts:
    return MessageParts(
        sender=Address(f"angebote@{DOMAIN}", "Bücher & Co"),
        to=[Address(c["address"], c["name"])],
        subject=c["subject"],
        text=c["text"],
        html=c["html"],
        headers=[
            ("List-Unsubscribe", c["unsubscribe"]),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ],
        message_id=c["message_id"],
        date=DATE,
    )


def stdlib_message(c: dict[str, Any]) -> bytes:
    message = EmailMessage(policy=SMTP)
    message["Date"] = DATE
    message["From"] = StdAddress("Bücher & Co", addr_spec=f"angebote@{DOMAIN}")
    message["To"] = StdAddress(c["name"], addr_spec=c["address"])
    message["Subject"] = c["subject"]
    message["Message-ID"] = c["message_id"]
    message["List-Unsubscribe"] = c["unsubscribe"]
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(c["text"])
    message.add_alternative(c["html"], subtype="html")
    return message.as_bytes()


def timed(label: str, count: int, work: Callable[[], object]) -> float:
    """Microseconds per message for `work`, which handles `count` messages."""
    gc.collect()
    started = time.perf_counter()
    work()
    per_message = (time.perf_counter() - started) / count * 1e6
    log(f"{label}: {per_message:.1f} µs/message")
    return per_message


def check(message: bytes, dns: dict[str, bytes]) -> None:
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return dns.get(name.decode().rstrip("."))

    if not dkimpy.verify(message, dnsfunc=lookup):
        raise RuntimeError("dkimpy does not verify the benchmarked output")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--sample", type=int, default=2_000)
    parser.add_argument("--baseline-messages", type=int, default=1_000)
    args = parser.parse_args()
    baseline_count = min(args.baseline_messages, args.messages)
    sample_count = min(args.sample, args.messages)

    rsa_pem, _ = generate_rsa_key(2048)
    ed_pem, _ = generate_ed25519_key()
    rsa_key = DkimKey.from_pem(DOMAIN, "s2026", rsa_pem)
    ed_key = DkimKey.from_pem(DOMAIN, "e2026", ed_pem)
    dns = {f"s2026._domainkey.{DOMAIN}": rsa_key.dns_record().encode()}

    contents = [personalised(n) for n in range(args.messages)]
    parts = [sendstream_parts(c) for c in contents]
    log(f"{args.messages} messages; baseline on the first {baseline_count}")

    built: list[bytes] = []
    build_us = timed("sendstream build", len(parts), lambda: built.extend(map(build, parts)))
    check(sign(built[0], [rsa_key]), dns)
    sign_rsa_us = timed(
        "sendstream sign RSA-2048", len(built), lambda: [sign(m, [rsa_key]) for m in built]
    )
    sign_ed_us = timed(
        "sendstream sign Ed25519", len(built), lambda: [sign(m, [ed_key]) for m in built]
    )
    some = built[:sample_count]
    sign_dual_us = timed(
        "sendstream sign RSA + Ed25519",
        len(some),
        lambda: [sign(m, [rsa_key, ed_key]) for m in some],
    )
    private_key = rsa_key.private_key
    assert isinstance(private_key, rsa.RSAPrivateKey)
    data = b"x" * 600  # about the size of the signed header data
    rsa_op_us = timed(
        "cryptography RSA-2048 signature alone",
        len(some),
        lambda: [private_key.sign(data, padding.PKCS1v15(), hashes.SHA256()) for _ in some],
    )

    sample = contents[:baseline_count]
    include = [h.encode() for h in SIGNED_HEADERS]

    def stdlib_sign(message: bytes) -> bytes:
        signature: bytes = dkimpy.sign(
            message,
            b"s2026",
            DOMAIN.encode(),
            rsa_pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[h for h in include if h.lower() in message.lower()],
        )
        return signature + message

    check(stdlib_sign(stdlib_message(sample[0])), dns)
    stdlib_built: list[bytes] = []
    stdlib_build_us = timed(
        "stdlib EmailMessage build",
        len(sample),
        lambda: stdlib_built.extend(map(stdlib_message, sample)),
    )
    stdlib_sign_us = timed(
        "dkimpy sign RSA-2048", len(sample), lambda: [stdlib_sign(m) for m in stdlib_built]
    )
    ours = build_us + sign_rsa_us
    theirs = stdlib_build_us + stdlib_sign_us

    result = {
        "messages": args.messages,
        "sample_messages": sample_count,
        "baseline_messages": baseline_count,
        "message_bytes": round(sum(map(len, built)) / len(built)),
        "build_us_per_msg": round(build_us, 1),
        "sign_rsa_us_per_msg": round(sign_rsa_us, 1),
        "sign_ed25519_us_per_msg": round(sign_ed_us, 1),
        "sign_dual_us_per_msg": round(sign_dual_us, 1),
        "rsa_2048_signature_alone_us": round(rsa_op_us, 1),
        "stdlib_build_us_per_msg": round(stdlib_build_us, 1),
        "dkimpy_sign_us_per_msg": round(stdlib_sign_us, 1),
        "stdlib_build_sign_us_per_msg": round(theirs, 1),
        "ratio_stdlib_vs_sendstream": round(theirs / ours, 2),
        "build_ratio_stdlib_vs_sendstream": round(stdlib_build_us / build_us, 2),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
