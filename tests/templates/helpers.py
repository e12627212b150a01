"""Small shared steps of the templates tests: versions and bundles built in
memory (rendering needs no database), and API calls."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import text

from sendstream.core.db import Database
from sendstream.templates.render import (
    Bundle,
    CompiledTemplate,
    Defaults,
    RenderContext,
    RenderedMessage,
    VersionSource,
)
from sendstream.templates.sandbox import RenderLimits
from tests.fixtures.actors import Actor

LIMITS = RenderLimits(timeout_ms=200, max_output_bytes=2_097_152, max_range=10_000)


def version(key: str = "welcome", kind: str = "template", **fields: Any) -> VersionSource:
    return VersionSource(
        template_id=uuid.uuid4(),
        key=key,
        kind=kind,
        version_id=uuid.uuid4(),
        number=1,
        **fields,
    )


def compiled(
    main: VersionSource,
    *,
    layout: VersionSource | None = None,
    partials: list[VersionSource] | None = None,
    limits: RenderLimits = LIMITS,
    defaults: Defaults | None = None,
) -> CompiledTemplate:
    bundle = Bundle(main, layout, {p.key: p for p in partials or []})
    return CompiledTemplate(bundle, limits, defaults or Defaults())


def render_text(source: str, strict: bool = False, **data: Any) -> str:
    """The text part of a one-field template rendered with `data`."""
    rendered = compiled(version(text=source, strict=strict)).render(RenderContext(data=data))
    assert rendered.text is not None
    return rendered.text


def render(main: VersionSource, **context: Any) -> RenderedMessage:
    return compiled(main).render(RenderContext(**context))


async def create_template(client: httpx.AsyncClient, actor: Actor, **body: Any) -> dict[str, Any]:
    body.setdefault("name", body.get("key", "Template"))
    response = await client.post("/v1/templates", headers=actor.headers, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def events_of(db: Database, *types: str) -> list[dict[str, Any]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT type, subject_id, data FROM events ORDER BY workspace_id, position")
        )
        return [
            {"type": r.type, "subject_id": r.subject_id, "data": r.data}
            for r in rows
            if not types or r.type in types
        ]


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The problem+json body of `response`, checked for status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = dict(response.json())
    assert body["code"] == code, body
    return body
