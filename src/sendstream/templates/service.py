"""The rules of templates and versions, and the entry points the delivery
pipeline renders through.

- A version is checked whole before it is stored (kind rules, sizes, headers,
  MJML compiled, Jinja syntax and sandbox rules, the partials and layout it
  names exist in this workspace); a rejected save stores nothing.
- Versions are never updated. Numbers come from `templates.latest_version`
  under the template's row lock, so concurrent saves never share one.
- An archived template keeps its versions (messages refer to them) but gets
  no new version, activation or send. A partial or layout that a live
  template's active version uses cannot be archived.
- `get_renderer` loads the version with the active versions of its layout
  and partials (the closure of their includes) and returns the compiled,
  cached template: call it once per batch, then render without the database.
- Events (same transaction): `template.created`, `template.version_created`,
  `template.version_activated`, `template.archived`.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from sendstream.contacts.service import contact_service
from sendstream.core.outbox import emit
from sendstream.core.pagination import PageParams, cursor_int, cursor_uuid, encode_cursor
from sendstream.models.template import Template
from sendstream.models.template_version import TemplateVersion
from sendstream.templates.errors import (
    TemplateArchived,
    TemplateExists,
    TemplateHasNoVersion,
    TemplateInUse,
    TemplateNotFound,
    TemplateNotSendable,
    TemplateVersionNotFound,
)
from sendstream.templates.references import check_references, load_bundle
from sendstream.templates.render import (
    CompiledTemplate,
    RenderContext,
    compile_bundle,
)
from sendstream.templates.repository import template_repository
from sendstream.templates.schemas import (
    PreviewRead,
    PreviewRequest,
    TemplateCreate,
    TemplateRead,
    TemplateSummary,
    TemplateUpdate,
    VersionCreate,
    VersionRead,
    VersionSummary,
)
from sendstream.templates.versions import PreparedVersion, prepare_version


def _version_read(version: TemplateVersion, active_id: uuid.UUID | None) -> VersionRead:
    return VersionRead(
        id=version.id,
        template_id=version.template_id,
        number=version.number,
        active=version.id == active_id,
        subject=version.subject,
        html=version.html,
        text=version.text,
        mjml=version.mjml,
        from_email=version.from_email,
        from_name=version.from_name,
        reply_to=version.reply_to,
        headers=dict(version.headers),
        layout=version.layout_key,
        partials=list(version.partial_keys),
        strict=version.strict,
        inline_css=version.inline_css,
        sample_data=dict(version.sample_data),
        created_at=version.created_at,
        created_by=version.created_by,
    )


def _template_read(template: Template, active: TemplateVersion | None) -> TemplateRead:
    return TemplateRead(
        id=template.id,
        key=template.key,
        name=template.name,
        kind=template.kind,
        description=template.description,
        archived=template.archived_at is not None,
        archived_at=template.archived_at,
        latest_version=template.latest_version,
        active_version=_version_read(active, template.active_version_id) if active else None,
        created_at=template.created_at,
        updated_at=template.updated_at,
    )


class TemplateService:
    # --- reads

    async def list_templates(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        page: PageParams,
        *,
        kind: str | None = None,
        archived: bool | None = None,
    ) -> tuple[list[TemplateSummary], str | None]:
        rows = list(
            await template_repository.page(
                session,
                workspace_id,
                kind=kind,
                archived=archived,
                after=cursor_uuid(page.cursor),
                limit=page.limit + 1,
            )
        )
        cursor = None
        if len(rows) > page.limit:
            rows = rows[: page.limit]
            cursor = encode_cursor({"id": str(rows[-1][0].id)})
        summaries = [
            TemplateSummary(
                id=t.id,
                key=t.key,
                name=t.name,
                kind=t.kind,
                description=t.description,
                archived=t.archived_at is not None,
                archived_at=t.archived_at,
                latest_version=t.latest_version,
                active_version_number=number,
                created_at=t.created_at,
                updated_at=t.updated_at,
            )
            for t, number in rows
        ]
        return summaries, cursor

    async def get_template(
        self, session: AsyncSession, workspace_id: uuid.UUID, template: str | uuid.UUID
    ) -> TemplateRead:
        found = await self._template(session, workspace_id, template)
        return _template_read(found, await self._active(session, found))

    async def list_versions(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        template: str | uuid.UUID,
        page: PageParams,
    ) -> tuple[list[VersionSummary], str | None]:
        found = await self._template(session, workspace_id, template)
        rows = list(
            await template_repository.versions_page(
                session,
                workspace_id,
                found.id,
                before=cursor_int(page.cursor, "number"),
                limit=page.limit + 1,
            )
        )
        cursor = None
        if len(rows) > page.limit:
            rows = rows[: page.limit]
            cursor = encode_cursor({"number": rows[-1].number})
        return [
            VersionSummary(
                id=v.id,
                number=v.number,
                active=v.id == found.active_version_id,
                subject=v.subject,
                layout=v.layout_key,
                created_at=v.created_at,
                created_by=v.created_by,
            )
            for v in rows
        ], cursor

    async def get_version(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        template: str | uuid.UUID,
        number: int,
    ) -> VersionRead:
        found = await self._template(session, workspace_id, template)
        version = await self._version(session, found, number)
        return _version_read(version, found.active_version_id)

    async def find_active_version(
        self, session: AsyncSession, workspace_id: uuid.UUID, template: str | uuid.UUID
    ) -> TemplateVersion | None:
        """The version a send of `template` (id or key) would use now, or None
        when there is no such sendable template or it has no active version."""
        found = await self._find(session, workspace_id, template)
        if found is None or found.archived_at is not None or found.kind != "template":
            return None
        return await self._active(session, found)

    # --- writes

    async def create_template(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        body: TemplateCreate,
        actor: str | None,
    ) -> TemplateRead:
        prepared = prepare_version(body, body.kind)
        await check_references(session, workspace_id, prepared.references, body.key)
        template = await template_repository.insert(
            session,
            workspace_id,
            {
                "key": body.key,
                "name": body.name,
                "kind": body.kind,
                "description": body.description,
            },
        )
        if template is None:
            raise TemplateExists(body.key)
        version = await self._store_version(session, template, prepared, actor, activate=True)
        emit(
            session,
            workspace_id,
            "template.created",
            {
                "id": template.id,
                "key": template.key,
                "name": template.name,
                "kind": template.kind,
                "version": {"id": version.id, "number": version.number},
            },
            subject_type="template",
            subject_id=template.id,
        )
        self._announce_version(session, template, version)
        return _template_read(template, version)

    async def create_version(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        template: str | uuid.UUID,
        body: VersionCreate,
        actor: str | None,
    ) -> VersionRead:
        found = await self._template(session, workspace_id, template, for_update=True)
        if found.archived_at is not None:
            raise TemplateArchived(found.key)
        prepared = prepare_version(body, found.kind)
        await check_references(session, workspace_id, prepared.references, found.key)
        version = await self._store_version(session, found, prepared, actor, body.activate)
        self._announce_version(session, found, version)
        return _version_read(version, found.active_version_id)

    async def activate_version(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        template: str | uuid.UUID,
        number: int,
    ) -> TemplateRead:
        found = await self._template(session, workspace_id, template, for_update=True)
        if found.archived_at is not None:
            raise TemplateArchived(found.key)
        version = await self._version(session, found, number)
        if found.active_version_id != version.id:
            await template_repository.set_active(session, found, version.id)
            emit(
                session,
                workspace_id,
                "template.version_activated",
                {
                    "template_id": found.id,
                    "key": found.key,
                    "version_id": version.id,
                    "number": version.number,
                },
                subject_type="template",
                subject_id=found.id,
            )
        return _template_read(found, version)

    async def update_template(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        template: str | uuid.UUID,
        body: TemplateUpdate,
    ) -> TemplateRead:
        found = await self._template(session, workspace_id, template, for_update=True)
        given = body.model_fields_set
        if "name" in given and body.name is not None:
            found.name = body.name
        if "description" in given:
            found.description = body.description
        await session.flush()
        await session.refresh(found)
        return _template_read(found, await self._active(session, found))

    async def archive_template(
        self, session: AsyncSession, workspace_id: uuid.UUID, template: str | uuid.UUID
    ) -> None:
        """Archive (the API's DELETE); archiving twice changes nothing."""
        found = await self._template(session, workspace_id, template, for_update=True)
        if found.archived_at is not None:
            return
        if found.kind != "template":
            users = await template_repository.used_by(session, workspace_id, found.key)
            if users:
                raise TemplateInUse(found.key, found.kind, users)
        await template_repository.archive(session, found)
        emit(
            session,
            workspace_id,
            "template.archived",
            {"id": found.id, "key": found.key},
            subject_type="template",
            subject_id=found.id,
        )

    # --- rendering

    async def get_renderer(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        template: str | uuid.UUID,
        version: int | None = None,
    ) -> CompiledTemplate:
        """The compiled template a send of `template` (id or key) renders
        with: its active version, or version number `version`. Refuses
        archived templates, layouts and partials. The result is cached per
        process; `render()` on it needs no database."""
        found = await self._template(session, workspace_id, template)
        if found.archived_at is not None:
            raise TemplateArchived(found.key)
        if found.kind != "template":
            raise TemplateNotSendable(found.key, found.kind)
        chosen = await self._version(session, found, version) if version else None
        if chosen is None:
            chosen = await self._active(session, found)
            if chosen is None:
                raise TemplateHasNoVersion(found.key)
        return compile_bundle(await load_bundle(session, found, chosen))

    async def get_version_renderer(
        self, session: AsyncSession, workspace_id: uuid.UUID, version_id: uuid.UUID
    ) -> CompiledTemplate:
        """The compiled template of one exact version, as a queued message
        names it (archiving after the message was queued does not stop it)."""
        found = await template_repository.get_version_by_id(session, workspace_id, version_id)
        if found is None:
            raise TemplateNotFound(f"version {version_id}")
        template, version = found
        return compile_bundle(await load_bundle(session, template, version))

    async def preview(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        template: str | uuid.UUID,
        body: PreviewRequest,
    ) -> PreviewRead:
        found = await self._template(session, workspace_id, template)
        if body.version is not None:
            version = await self._version(session, found, body.version)
        else:
            active = await self._active(session, found)
            if active is None:
                raise TemplateHasNoVersion(found.key)
            version = active
        contact = None
        if body.contact_id is not None:
            read = await contact_service.get_contact(session, workspace_id, body.contact_id)
            contact = read.model_dump(mode="json")
        data = body.data if body.data is not None else dict(version.sample_data)
        compiled = compile_bundle(await load_bundle(session, found, version))
        rendered = compiled.render(RenderContext(contact=contact, data=data))
        return PreviewRead(
            template_id=found.id,
            version=version.number,
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            from_email=rendered.from_.email if rendered.from_ else None,
            from_name=rendered.from_.name if rendered.from_ else None,
            reply_to=rendered.reply_to,
            headers=rendered.headers,
        )

    # --- helpers

    async def _find(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        template: str | uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Template | None:
        if isinstance(template, uuid.UUID):
            return await template_repository.get(
                session, workspace_id, template, for_update=for_update
            )
        try:
            template_id = uuid.UUID(template)
        except ValueError:
            return await template_repository.find_by_key(
                session, workspace_id, template, for_update=for_update
            )
        return await template_repository.get(
            session, workspace_id, template_id, for_update=for_update
        )

    async def _template(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        template: str | uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Template:
        found = await self._find(session, workspace_id, template, for_update=for_update)
        if found is None:
            raise TemplateNotFound(template)
        return found

    async def _version(
        self, session: AsyncSession, template: Template, number: int
    ) -> TemplateVersion:
        version = await template_repository.get_version(
            session, template.workspace_id, template.id, number
        )
        if version is None:
            raise TemplateVersionNotFound(template.key, number)
        return version

    async def _active(self, session: AsyncSession, template: Template) -> TemplateVersion | None:
        if template.active_version_id is None:
            return None
        found = await template_repository.get_version_by_id(
            session, template.workspace_id, template.active_version_id
        )
        return found[1] if found else None

    async def _store_version(
        self,
        session: AsyncSession,
        template: Template,
        prepared: PreparedVersion,
        actor: str | None,
        activate: bool,
    ) -> TemplateVersion:
        number = await template_repository.allocate_version_number(session, template)
        version = await template_repository.insert_version(
            session,
            {
                **prepared.values,
                "workspace_id": template.workspace_id,
                "template_id": template.id,
                "number": number,
                "created_by": actor,
            },
        )
        if activate:
            await template_repository.set_active(session, template, version.id)
        return version

    def _announce_version(
        self, session: AsyncSession, template: Template, version: TemplateVersion
    ) -> None:
        emit(
            session,
            template.workspace_id,
            "template.version_created",
            {
                "template_id": template.id,
                "key": template.key,
                "id": version.id,
                "number": version.number,
                "active": template.active_version_id == version.id,
            },
            subject_type="template",
            subject_id=template.id,
        )


template_service = TemplateService()
