"""The ASGI application: `create_app()` builds it for every process role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from sendstream import __version__
from sendstream.api import api_router
from sendstream.bounces.providers.hooks_router import router as provider_hooks_router
from sendstream.core.db import create_database, get_database, install_database
from sendstream.core.health import router as health_router
from sendstream.core.http import (
    BodySizeLimitMiddleware,
    RequestContextMiddleware,
    install_error_handlers,
)
from sendstream.core.logging import configure_logging
from sendstream.core.openapi import install_openapi
from sendstream.delivery.capture_router import router as mailbox_router
from sendstream.tracking.router import router as tracking_router

DESCRIPTION = """\
Sendstream's REST API. Authenticate with `Authorization: Bearer <api key>`.

* Errors are RFC 9457 `application/problem+json` with a stable `code`.
* Lists use cursor pagination: pass `next_cursor` back as `cursor`.
* Every create accepts an `Idempotency-Key` header; a retry with the same key
  returns the stored response.
* Each key has a token-bucket rate limit, announced in `RateLimit-*` headers.
"""


def create_app(*, manage_database: bool = True) -> FastAPI:
    """`manage_database=False` leaves the process-wide database to the caller
    (tests and `sendstream up`, which share it with the worker)."""
    configure_logging()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_database:
            install_database(create_database())
        get_database()
        yield
        if manage_database:
            await get_database().dispose()

    app = FastAPI(
        title="Sendstream API",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_openapi(app)
    app.add_middleware(BodySizeLimitMiddleware)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health_router)
    app.include_router(api_router)
    # Links in mail (pixel, clicks, unsubscribe): public, outside /v1.
    app.include_router(tracking_router)
    # ESP event webhooks (SES/SNS, SendGrid, Postmark, Mailgun): public, outside /v1.
    app.include_router(provider_hooks_router)
    # The development mailbox (capture transport): /dev/mailbox, HTML.
    app.include_router(mailbox_router)

    # The interactive reference is served from the installed package, not a
    # CDN: a self-hosted install may have no way out to the internet.
    app.mount(
        "/v1/docs/static",
        StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
        name="docs-static",
    )

    @app.get("/v1/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/v1/openapi.json",
            title="Sendstream API",
            swagger_js_url="/v1/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/v1/docs/static/swagger-ui.css",
            swagger_favicon_url="/v1/docs/static/favicon-32x32.png",
        )

    return app
