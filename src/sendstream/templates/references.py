"""What a version refers to: the partials its sources include and the
layout it names. Checked when a version is saved, loaded (their active
versions, the closure of their includes) when a renderer is built. Every
lookup is in the template's own workspace: another workspace's template of
the same key is never seen."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.models.template import Template
from sendstream.models.template_version import TemplateVersion
from sendstream.templates.errors import TemplateReferenceInvalid
from sendstream.templates.render import Bundle, VersionSource
from sendstream.templates.repository import template_repository
from sendstream.templates.validation import Reference

# A bundle reaching more partials than this is refused: it is a mistake.
MAX_PARTIALS = 100


def version_source(template: Template, version: TemplateVersion) -> VersionSource:
    return VersionSource(
        template_id=template.id,
        key=template.key,
        kind=template.kind,
        version_id=version.id,
        number=version.number,
        subject=version.subject,
        html=version.html,
        text=version.text,
        headers=dict(version.headers),
        from_email=version.from_email,
        from_name=version.from_name,
        reply_to=version.reply_to,
        layout_key=version.layout_key,
        strict=version.strict,
        inline_css=version.inline_css,
    )


def problem(
    field: str, message: str, reference: Reference | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "field": field,
        "line": reference.line if reference else None,
        "column": reference.column if reference else None,
        "message": message,
        **extra,
    }


async def check_references(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    references: list[Reference],
    own_key: str,
) -> None:
    """Refuse (`TemplateReferenceInvalid`, every fault listed where it is
    written) partials and layouts that are missing from this workspace,
    archived, without an active version or of the wrong kind; a template
    naming itself too. `ignore missing` includes may name nothing."""
    keys = {r.key for r in references if r.key != own_key}
    found = await template_repository.with_active_versions(session, workspace_id, keys)
    errors: list[dict[str, Any]] = []
    for ref in references:
        field = ref.field
        if ref.key == own_key:
            errors.append(problem(field, f"{ref.key!r} cannot use itself", ref, key=ref.key))
            continue
        row = found.get(ref.key)
        if row is None:
            if not ref.optional:
                errors.append(
                    problem(field, f"no template {ref.key!r} in this workspace", ref, key=ref.key)
                )
            continue
        template, active = row
        if template.kind != ref.kind:
            message = f"{ref.key!r} is a {template.kind}, not a {ref.kind}"
        elif template.archived_at is not None:
            message = f"{ref.key!r} is archived"
        elif active is None:
            message = f"{ref.key!r} has no active version"
        else:
            continue
        errors.append(problem(field, message, ref, key=ref.key))
    if errors:
        raise TemplateReferenceInvalid(errors)


async def load_bundle(
    session: AsyncSession, template: Template, version: TemplateVersion
) -> Bundle:
    """The version with the active versions of its layout and of every
    partial it reaches. A missing partial is left out: the render then
    fails at the include's line (or skips it, with `ignore missing`)."""
    workspace_id = template.workspace_id
    layout: VersionSource | None = None
    pending = set(version.partial_keys)
    if version.layout_key is not None:
        rows = await template_repository.with_active_versions(
            session, workspace_id, [version.layout_key]
        )
        row = rows.get(version.layout_key)
        if (
            row is None
            or row[0].kind != "layout"
            or row[0].archived_at is not None
            or row[1] is None
        ):
            raise TemplateReferenceInvalid(
                [
                    problem(
                        "layout",
                        f"layout {version.layout_key!r} is missing, archived, not a layout "
                        "or has no active version",
                        key=version.layout_key,
                    )
                ]
            )
        layout = version_source(row[0], row[1])
        pending |= set(row[1].partial_keys)
    partials: dict[str, VersionSource] = {}
    tried: set[str] = {template.key}
    while pending:
        tried |= pending
        if len(tried) > MAX_PARTIALS:
            raise TemplateReferenceInvalid(
                [problem("html", f"more than {MAX_PARTIALS} partials are reachable")]
            )
        rows = await template_repository.with_active_versions(session, workspace_id, pending)
        pending = set()
        for key, (partial, active) in rows.items():
            if partial.kind != "partial" or partial.archived_at is not None or active is None:
                continue
            partials[key] = version_source(partial, active)
            pending |= set(active.partial_keys) - tried
    return Bundle(version_source(template, version), layout, partials)
