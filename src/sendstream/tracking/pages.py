"""The server-rendered pages of the tracking domain: the preference page and
the short answers of links that lead nowhere. Plain HTML forms (no
JavaScript), Jinja2 with autoescaping on, so every name a workspace or
person chose is escaped."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Final

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from sendstream.tracking.unsubscribe import Preferences

# Every page carries its token in the URL: keep it out of caches, Referer
# headers and search engines; allow no script, only same-origin form posts.
PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(Path(__file__).parent / "html"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def preference_page(prefs: Preferences, action: str) -> str:
    """`action`: the URL the forms post to (the page's own)."""
    return (
        _environment()
        .get_template("preferences.html")
        .render(title="Your email preferences", prefs=prefs, action=action)
    )


def message_page(title: str, text: str) -> str:
    return _environment().get_template("message.html").render(title=title, text=text)


def invalid_link_page() -> str:
    return message_page(
        "This link does not work",
        "The link is incomplete or was changed. Open it again from the email you received.",
    )
