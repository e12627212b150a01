"""schemathesis drives every operation of the OpenAPI document against a real
server process: no input may produce a 500, and every response must match what
the document promises (status codes, content types, bodies, headers)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy.engine import URL

from sendstream.app import create_app
from sendstream.core.db import Database
from sendstream.core.settings import Settings
from sendstream.workspaces.service import api_key_service, workspace_service
from tests.fixtures.processes import clean_env, free_port, start_cli, stop, wait_http

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, settings: Settings, database_url: URL
) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    port = free_port()
    assert settings.database_url
    env = clean_env(
        SENDSTREAM_DATABASE_URL=settings.database_url,
        # schemathesis sends thousands of requests; the budget is not under test here.
        SENDSTREAM_API__RATE_LIMIT_PER_SECOND="100000",
        SENDSTREAM_API__RATE_LIMIT_BURST="100000",
        SENDSTREAM_LOG__LEVEL="WARNING",
    )
    log = tmp / "server.log"
    proc = start_cli(["server", "--port", str(port)], env, Path(tmp), log)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
    errors = [line for line in log.read_text().splitlines() if '"level": "error"' in line]
    assert not errors, "\n".join(errors[:5])


# schemathesis asks the auth provider while collecting, before any fixture has
# made a key; it gets a placeholder that each test swaps for the real key. Cases
# where schemathesis drops or mangles the header to test authentication keep
# what it sent.
PLACEHOLDER = "Bearer <admin key>"


@pytest.fixture(scope="module")
async def admin_key(live_server: str, database: Database) -> str:
    async with database.session() as session:
        workspace = await workspace_service.create_workspace(
            session, name="Schemathesis", slug=f"schemathesis-{uuid.uuid4().hex[:8]}"
        )
        _, key = await api_key_service.create_key(
            session, workspace.id, name="schemathesis", scopes=["admin"]
        )
    return key


# The document is the one the server serves; building it needs no database.
schema = schemathesis.openapi.from_dict(create_app(manage_database=False).openapi())


@schema.auth()
class AdminKey:
    def get(self, case: Any, ctx: Any) -> str:
        return PLACEHOLDER

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": data}


@schema.parametrize()
@hypothesis.settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    database=None,
)
def test_every_operation_honours_the_document(case: Any, live_server: str, admin_key: str) -> None:
    authenticated = (case.headers or {}).get("Authorization") == PLACEHOLDER
    if authenticated:
        case.headers["Authorization"] = f"Bearer {admin_key}"
    response = case.call_and_validate(
        base_url=live_server,
        excluded_checks=[positive_data_acceptance],
        additional_checks=[schema_valid_input_is_accepted_unless_semantically_wrong],
    )
    if authenticated:
        assert response.status_code != 401, response.text


# Rejections of schema-valid input that are right by design: an opaque cursor
# the API never issued, a string that is not a deliverable address, a scope name
# that does not exist, an expiry in the past, an Idempotency-Key already used
# for another request. Each answers 422 with its own code; anything else that
# the schema allows must be accepted.
SEMANTIC_REJECTIONS = {
    "invalid_cursor",
    # A NUL character in any text (PostgreSQL cannot store one).
    "invalid_text",
    "invalid_email",
    "unknown_scope",
    "invalid_expiry",
    "idempotency_key_reused",
    # Contacts: values checked against the workspace's own declarations
    # (custom fields, lists) or across fields, which a schema cannot express.
    "unknown_timezone",
    "unknown_field",
    "invalid_field_value",
    "invalid_field_definition",
    "reserved_field_key",
    "email_required",
    "external_id_required",
    "email_mismatch",
    "external_id_mismatch",
    "invalid_where",
    "list_status_without_list",
    "invalid_system",
    # Contact imports: an uploaded file that is empty, header-only, names
    # unknown columns or maps to unknown fields.
    "invalid_import_file",
    # Sending domains: a string the schema allows that is not a domain name
    # (IDNA validity is not expressible as a JSON-schema pattern).
    "invalid_domain_name",
    # Inbound domains: the same for the domain a workspace receives mail for
    # (and the deployment's own bounce domain, which no workspace may take).
    "invalid_inbound_domain",
    # Templates: sources the schema allows but Jinja or MJML refuses, and
    # references to the workspace's own partials and layouts.
    "invalid_template",
    "template_syntax_error",
    "template_security_error",
    "template_reference_invalid",
    "template_undefined_variable",
    "template_render_limit",
    "template_render_error",
    # The send API: addresses, headers, attachments and content checked the
    # way the MIME builder and the workspace's own templates, sending
    # domains, lists and suppressions see them.
    "invalid_address",
    "recipient_suppressed",
    "header_injection",
    "reserved_header",
    "invalid_header",
    "attachment_too_large",
    "invalid_attachment",
    "content_required",
    "content_conflict",
    "from_required",
    "send_at_too_far",
    "list_not_found",
    "invalid_data",
    "too_many_messages",
    "request_too_large",
    "data_too_large",
    "template_not_found",
    "template_version_not_found",
    "template_archived",
    "template_not_sendable",
    "template_has_no_active_version",
    "unknown_sending_domain",
    "domain_not_verified",
    # The send API: a marketing message to a contact unsubscribed from its list.
    "recipient_unsubscribed_from_list",
    # Webhook endpoints: a URL the schema allows but that is not a usable
    # receiver (scheme, credentials, length, https outside development, a
    # host that does not resolve or resolves to internal addresses), event
    # types the catalogue does not have, and headers that would forge or
    # break the request.
    "invalid_webhook_url",
    "webhook_https_required",
    "webhook_url_not_allowed",
    "webhook_host_unresolvable",
    "unknown_event_type",
    # Bounce mailboxes and ESP webhooks: settings that cannot work together
    # (xoauth2 without a token, moving mail to the folder being read, text
    # that is not a PEM certificate) and a SendGrid key that is not one.
    "invalid_bounce_mailbox",
    "invalid_provider_webhook",
}


def schema_valid_input_is_accepted_unless_semantically_wrong(
    ctx: Any, response: Any, case: Any
) -> bool | None:
    if response.status_code == 422:
        problem = response.json()
        if problem.get("code") in SEMANTIC_REJECTIONS:
            return None
        if problem.get("code") == "validation_error" and _only_final_newlines(
            problem.get("errors") or [], case
        ):
            return None
    result: bool | None = positive_data_acceptance(ctx, response, case)
    return result


def _only_final_newlines(errors: list[dict[str, Any]], case: Any) -> bool:
    """Every error is a pattern refusing a string that ends in a newline.

    JSON Schema patterns are ECMA-262 regular expressions, in which `$` is
    the end of the text, and the server checks them so. The generator reads
    them with Python's `re`, whose `$` also matches before a final newline:
    `^https?://[^\\s]+$` "allows" `http://a` followed by a newline there,
    and the server's 422 for it is the schema's own meaning."""
    if not errors:
        return False
    parts = {
        "body": case.body,
        "query": case.query,
        "path": case.path_parameters,
        "header": case.headers,
    }
    for error in errors:
        if error.get("type") != "string_pattern_mismatch":
            return False
        where, *steps = str(error.get("location", "")).split(".")
        value: Any = parts.get(where)
        for step in steps:
            if isinstance(value, dict):
                value = value.get(step)
            elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
                value = value[int(step)]
            else:
                value = None
        if not (isinstance(value, str) and value.endswith("\n")):
            return False
    return True
