"""What the delivery pipeline calls while it builds a message: tracking
rewrites of the HTML and the unsubscribe headers and link. Pure functions (no
database); the signing key comes from the settings' master key.

`rewrite_html` scans the HTML with a small tokenizer that follows the HTML
rules that matter for finding `<a>` start tags: comments, raw-text elements
(`script`, `style`) and RCDATA ones (`title`, `textarea`) are skipped as a
whole; attributes are read as the HTML tokenizer reads them (quoted,
unquoted, valueless, first of a repeated name wins), and an `href` is taken
with its character references decoded. Only the `href` values it rewrites and
the inserted pixel (and trap link) change; every other byte stays as it was.
Outlook's conditional comments (`<!--[if mso]> ... <![endif]-->`) are scanned
inside, because Outlook renders them; VML `href`s are left alone.

Left alone: links that are not http(s) (`mailto:`, `tel:`, `#anchors`,
relative), links with a `data-sendstream-notrack` attribute, hrefs holding
template leftovers (`{{`, `{%`), links already pointing at our tracking
paths, and URLs over `tokens.MAX_URL_BYTES`.
"""

from __future__ import annotations

import html as html_lib
import re
import uuid
from dataclasses import dataclass
from typing import Final

from sendstream.core.settings import Settings, get_settings
from sendstream.tracking import tokens
from sendstream.tracking.tokens import Kind

ONE_CLICK: Final = ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
NOTRACK_ATTRIBUTE: Final = "data-sendstream-notrack"


@dataclass(frozen=True, slots=True)
class TrackingContext:
    workspace_id: uuid.UUID
    message_id: uuid.UUID
    contact_id: uuid.UUID | None
    list_id: uuid.UUID | None
    email: str
    track_opens: bool
    track_clicks: bool
    # The workspace's tracking base URL (`tracking_base_url(settings)`).
    base_url: str


# --- settings the pipeline reads when it builds a TrackingContext


def tracking_base_url(settings: Settings | None = None) -> str:
    """`tracking.base_url`, else `api.public_url`, else the API's own address."""
    settings = settings or get_settings()
    base = settings.tracking.base_url or settings.api.public_url
    if not base:
        base = f"http://{settings.api.host}:{settings.api.port}"
    return base.rstrip("/")


def mailto_domain(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return settings.tracking.mailto_domain or settings.delivery.bounce_domain


def tracking_enabled(
    workspace_id: uuid.UUID, stream: str, settings: Settings | None = None
) -> bool:
    """Whether messages of this workspace and stream may be tracked at all; a
    message is tracked when this holds and its own flag (`track_opens`,
    `track_clicks`) is set."""
    settings = settings or get_settings()
    tracking = settings.tracking
    if stream not in tracking.streams:
        return False
    return tracking.workspaces.get(workspace_id, tracking.enabled)


# --- unsubscribe


def unsubscribe_url(ctx: TrackingContext) -> str:
    """The preference page; the same URL takes the RFC 8058 one-click POST."""
    token = tokens.make_token(
        Kind.UNSUBSCRIBE, ctx.workspace_id, ctx.message_id, ctx.contact_id, ctx.list_id
    )
    return f"{ctx.base_url.rstrip('/')}/u/{token}"


def unsubscribe_mailto(ctx: TrackingContext, mailto_domain: str) -> str:
    local = tokens.mailto_local_part(ctx.workspace_id, ctx.message_id)
    return f"mailto:{local}@{mailto_domain}?subject=unsubscribe"


def unsubscribe_headers(ctx: TrackingContext, mailto_domain: str) -> list[tuple[str, str]]:
    """`List-Unsubscribe` (the HTTPS one-click URL, then a mailto) and
    `List-Unsubscribe-Post: List-Unsubscribe=One-Click`, as RFC 8058 asks.
    Both must be covered by the DKIM signature (the pipeline's signer
    oversigns them)."""
    url = unsubscribe_url(ctx)
    mailto = unsubscribe_mailto(ctx, mailto_domain)
    return [("List-Unsubscribe", f"<{url}>, <{mailto}>"), ONE_CLICK]


# --- the HTML rewrite

# One pass finds what matters: comments (not Outlook's conditional ones),
# raw-text and RCDATA elements with their content, `<a>` start tags and
# `</body>`. Possessive quantifiers keep a malformed tag from backtracking.
_ATTRIBUTE = r"""[^\s/>][^\s/>=]*+(?:\s*+=\s*+(?:"[^"]*+"|'[^']*+'|[^\s>]*+))?+"""
_SCAN = re.compile(
    r"<!--(?:>|->|(?!\[if)(?s:.)*?(?:-->|\Z))"
    r"|<(?P<raw>script|style|title|textarea)(?=[\s/>])(?s:.)*?(?:</(?P=raw)\s*>|\Z)"
    rf"|<a(?=[\s/>])(?P<attrs>(?:\s++|/|{_ATTRIBUTE})*+)>"
    r"|</body\s*>",
    re.IGNORECASE,
)
_ATTR = re.compile(
    r"""(?P<name>[^\s/>][^\s/>=]*+)(?:\s*+=\s*+(?P<value>"[^"]*+"|'[^']*+'|[^\s>]*+))?+"""
)
_FIRST_HREF = re.compile(r"""\s++href\s*+=\s*+("[^"]*+"|'[^']*+')""", re.IGNORECASE)
_BODY_CLOSE = re.compile(r"</body\s*>", re.IGNORECASE)
_URL_NOISE = re.compile(r"[\t\n\r]")
_SPACE: Final = " \t\n\r\f"
_QUOTES: Final = ("'", '"')
_NOTRACK_SIZE: Final = len(NOTRACK_ATTRIBUTE)
_PIXEL = (
    '<img src="{url}" width="1" height="1" alt="" '
    'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0" />'
)
_TRAP = '<a href="{url}" style="display:none" aria-hidden="true" tabindex="-1"></a>'


def _href(attrs: str) -> tuple[int, int, str] | None:
    """(start, end, value) of the tag's `href` value within `attrs`, or None
    when it has none or is marked not to be tracked."""
    # Fast path, most links: a quoted href first, and no opt-out anywhere.
    first = _FIRST_HREF.match(attrs)
    if first is not None and "notrack" not in attrs.lower():
        start, end = first.span(1)
        return start, end, attrs[start + 1 : end - 1]
    found: tuple[int, int, str] | None = None
    seen_href = False
    for match in _ATTR.finditer(attrs):
        name = match.group(1)
        # Length first: most attributes are neither, and lower() costs.
        size = len(name)
        if size == _NOTRACK_SIZE and name.lower() == NOTRACK_ATTRIBUTE:
            return None
        if size == 4 and not seen_href and name.lower() == "href":
            seen_href = True  # a repeated href is ignored, as browsers do
            value = match.group(2)
            if value is not None:
                start, end = match.span(2)
                if value[:1] in _QUOTES:
                    value = value[1:-1]
                found = (start, end, value)
    return found


def _target(value: str) -> str | None:
    """The URL a browser would follow for this href, if it is one we track."""
    url = value
    if "&" in url:
        # `&amp;` is nearly always the only reference in a URL.
        url = url.replace("&amp;", "&")
        if "&" in url and ";" in url:
            url = html_lib.unescape(value)
    if url[:1] in _SPACE or url[-1:] in _SPACE:
        url = url.strip(_SPACE)
    if "\t" in url or "\n" in url or "\r" in url:
        url = _URL_NOISE.sub("", url)
    head = url[:8].lower()
    if not (head == "https://" or head[:7] == "http://"):
        return None
    if "{{" in url or "{%" in url:
        return None
    return url


def rewrite_html(html: str, ctx: TrackingContext) -> str:
    """Click links to signed redirect URLs (`track_clicks`) and a 1x1 open
    pixel before `</body>` or at the end (`track_opens`); with click
    tracking, also a hidden trap link (`tracking.trap_link`). HTML that
    already holds our tracking links gets no second pixel."""
    if not (ctx.track_opens or ctx.track_clicks):
        return html
    settings = get_settings()
    raw_base = ctx.base_url.rstrip("/")
    ours = f"{raw_base}/t/"
    base = html_lib.escape(raw_base)
    key = tokens.signing_key(settings)
    head = tokens.payload(Kind.CLICK, ctx.workspace_id, ctx.message_id, ctx.contact_id, ctx.list_id)
    click_prefix = f'"{base}/t/c/'
    rewritten_before = ours in html
    if not ctx.track_clicks:
        # Only the pixel: no need to read a single tag.
        if rewritten_before:
            return html
        closes = [m.start() for m in _BODY_CLOSE.finditer(html)]
        at = closes[-1] if closes else len(html)
        return html[:at] + _additions(ctx, base, key, settings) + html[at:]
    out: list[str] = []
    last = 0
    body_close = -1
    for match in _SCAN.finditer(html):
        attrs = match.group("attrs")
        if attrs is None:
            start = match.start()
            if html[start + 1] == "/":
                body_close = start
            continue
        href = _href(attrs)
        if href is None:
            continue
        url = _target(href[2])
        if url is None or url.startswith(ours):
            continue
        encoded = url.encode()
        if len(encoded) > tokens.MAX_URL_BYTES:
            continue
        offset = match.start("attrs")
        out.append(html[last : offset + href[0]])
        out.append(click_prefix)
        out.append(tokens.encode_payload(key, head + encoded))
        out.append('"')
        last = offset + href[1]
    insert = "" if rewritten_before else _additions(ctx, base, key, settings)
    if not insert:
        if not out:
            return html
        out.append(html[last:])
        return "".join(out)
    if body_close >= last:
        out.append(html[last:body_close])
        out.append(insert)
        out.append(html[body_close:])
    else:
        # No </body> after the last rewritten link: the pixel goes at the end.
        out.append(html[last:])
        out.append(insert)
    return "".join(out)


def _additions(ctx: TrackingContext, base: str, key: bytes, settings: Settings) -> str:
    parts = []
    if ctx.track_clicks and settings.tracking.trap_link:
        trap = tokens.payload(Kind.TRAP, ctx.workspace_id, ctx.message_id, ctx.contact_id, None)
        parts.append(_TRAP.format(url=f"{base}/t/c/{tokens.encode_payload(key, trap)}"))
    if ctx.track_opens:
        pixel = tokens.payload(
            Kind.OPEN, ctx.workspace_id, ctx.message_id, ctx.contact_id, ctx.list_id
        )
        parts.append(_PIXEL.format(url=f"{base}/t/o/{tokens.encode_payload(key, pixel)}"))
    return "".join(parts)
