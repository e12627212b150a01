"""The public routes ESPs post their events to:

    POST /hooks/{provider}/{webhook_id}     provider: ses | sendgrid | postmark | mailgun

No API key: the unguessable webhook id finds the receiver and the
provider's own signature (Postmark: basic-auth credentials) proves the
request (`receiving.py`). Outside /v1 and outside the OpenAPI document, like
the tracking routes: they speak the providers' formats, not our API's;
docs/bounces.md ("ESP webhooks") describes them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.bounces.providers.receiving import receiving_service
from sendstream.bounces.providers.schemas import ProviderHookResult
from sendstream.core.db import get_database
from sendstream.core.http import get_session


class HookRoute(APIRoute):
    """A unit of work like `core.http.UnitOfWorkRoute` (commit after a
    non-error answer, roll back otherwise), without its refusal of unknown
    query parameters: the URL is pasted into a provider's console, and
    what a provider appends must not break delivery."""

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


router = APIRouter(route_class=HookRoute, include_in_schema=False)
Session = Annotated[AsyncSession, Depends(get_session)]


@router.post("/hooks/{provider}/{webhook_id}")
async def receive_provider_event(
    provider: str, webhook_id: str, request: Request, session: Session
) -> ProviderHookResult:
    body = await request.body()
    return await receiving_service.receive(
        session, provider, webhook_id, body, {k.lower(): v for k, v in request.headers.items()}
    )
