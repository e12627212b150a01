"""The public endpoints mail clients reach: the open pixel, click
redirects, RFC 8058 one-click unsubscribe and the preference page. No API
key: the signed token in the path is the credential. They live outside
`/v1` and outside the OpenAPI document (they answer images, redirects and
HTML, not API resources); docs/tracking.md describes them.

    GET|HEAD /t/o/{token}   the 1x1 GIF, always (records message.opened)
    GET|HEAD /t/c/{token}   302 to the link's URL (records message.clicked);
                            a token that is not ours: 404 page, never a redirect
    GET      /u/{token}     the preference page (changes nothing)
    POST     /u/{token}     one-click (`List-Unsubscribe=One-Click`): 200,
                            empty body, no redirect; with the page's `action`
                            field: applies the form and shows the page again
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Final

import structlog
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from sendstream.core.db import get_database
from sendstream.core.http import client_ip, get_session, redact_path_in_logs
from sendstream.tracking import pages
from sendstream.tracking.errors import TrackingLinkInvalid
from sendstream.tracking.service import HitContext, engagement_service, hit_context
from sendstream.tracking.unsubscribe import unsubscribe_service

log = structlog.get_logger("sendstream.tracking")

# The smallest transparent GIF (1x1, 43 bytes).
PIXEL_GIF: Final = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
# Hits must reach us every time, never a cache (ours, a proxy's, a client's).
_NO_CACHE: Final = {
    "Cache-Control": "no-store, no-cache, must-revalidate, private, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
}
# Form fields of the preference page; a one-click POST has neither.
_ACTION = "action"
_LISTS = "lists"


class TrackingRoute(APIRoute):
    """A unit of work like `core.http.UnitOfWorkRoute`, without its refusal
    of unknown query parameters: mail clients and gateways append their own
    to links, and a reader's click must still work."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            async with get_database().sessionmaker() as session:
                request.state.session = session
                try:
                    response = await original(request)
                    if response.status_code >= 400:
                        await session.rollback()
                    else:
                        await session.commit()
                except BaseException:
                    await session.rollback()
                    raise
                return response

        return handler


class PixelRoute(TrackingRoute):
    """The pixel answers its GIF even when the database cannot record the
    open: a broken image in someone's mail helps nobody."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        inner = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await inner(request)
            except SQLAlchemyError as exc:
                log.warning("tracking.open_not_recorded", error=str(exc).splitlines()[0][:300])
                return _gif()

        return handler


router = APIRouter(route_class=TrackingRoute, include_in_schema=False)
# A token names a person's message and can unsubscribe them; a click token
# holds its URL. Access logs write the route template instead.
for _template in ("/t/o/{token}", "/t/c/{token}", "/u/{token}"):
    redact_path_in_logs(_template)
Session = Annotated[AsyncSession, Depends(get_session)]


def _hit(request: Request) -> HitContext:
    return hit_context(request.method, client_ip(request), request.headers.get("user-agent"))


def _gif() -> Response:
    return Response(PIXEL_GIF, media_type="image/gif", headers=_NO_CACHE)


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=pages.PAGE_HEADERS)


def _not_found() -> HTMLResponse:
    return _html(pages.invalid_link_page(), 404)


async def open_pixel(token: str, request: Request, session: Session) -> Response:
    try:
        await engagement_service.record_open(session, token, _hit(request))
    except TrackingLinkInvalid:
        pass  # a forged pixel records nothing, and still looks like a pixel
    return _gif()


router.add_api_route(
    "/t/o/{token}", open_pixel, methods=["GET", "HEAD"], route_class_override=PixelRoute
)


@router.api_route("/t/c/{token}", methods=["GET", "HEAD"])
async def click(token: str, request: Request, session: Session) -> Response:
    try:
        found = await engagement_service.record_click(session, token, _hit(request))
    except TrackingLinkInvalid:
        return _not_found()
    if found.url is None:
        return _html(pages.message_page("Nothing here", "This link leads nowhere."))
    return RedirectResponse(found.url, status_code=302, headers=_NO_CACHE)


@router.api_route("/u/{token}", methods=["GET", "HEAD"])
async def preference_page(token: str, request: Request, session: Session) -> HTMLResponse:
    try:
        prefs = await unsubscribe_service.preferences(session, token)
    except TrackingLinkInvalid:
        return _not_found()
    return _html(pages.preference_page(prefs, request.url.path))


@router.post("/u/{token}")
async def unsubscribe(token: str, request: Request, session: Session) -> Response:
    try:
        form = await request.form()
    except (StarletteHTTPException, MultiPartException):
        form = None  # an unreadable body is still a one-click POST
    action = form.get(_ACTION) if form is not None else None
    try:
        if isinstance(action, str):
            wanted = [v for v in form.getlist(_LISTS) if isinstance(v, str)] if form else []
            prefs = await unsubscribe_service.apply(
                session, token, action=action, wanted=wanted, hit=_hit(request)
            )
            return _html(pages.preference_page(prefs, request.url.path))
        # RFC 8058: no page, no redirect; the body says nothing either way.
        await unsubscribe_service.one_click(session, token, _hit(request))
    except TrackingLinkInvalid:
        return _not_found()
    return Response(status_code=200, headers={"Cache-Control": "no-store"})
