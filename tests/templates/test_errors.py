"""Every kind of template error comes back with the field, line and column
of the fault: syntax and sandbox violations when a version is saved,
undefined variables, sandbox violations, limits and other failures when it
renders, MJML faults, and references to partials and layouts that cannot
be used."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sendstream.templates.errors import (
    TemplateRenderError,
    TemplateSecurityError,
    TemplateUndefinedVariable,
)
from tests.fixtures.actors import Actor
from tests.templates.helpers import create_template, problem, render_text


async def _save(client: httpx.AsyncClient, actor: Actor, **fields: Any) -> httpx.Response:
    body = {"key": "t", "name": "T", "subject": "s", **fields}
    if not {"html", "text", "mjml"} & set(fields):
        body["text"] = "t"
    return await client.post("/v1/templates", headers=actor.headers, json=body)


class TestSyntaxErrorsOnSave:
    @pytest.mark.parametrize(
        ("field", "source", "line", "column", "message"),
        [
            ("html", "<p>\n  Hi {{ name }\n</p>", 2, 14, "unexpected '}'"),
            ("html", "<p>\n{% foo %}</p>", 2, 4, "unknown tag 'foo'"),
            ("text", "a\nb\n{% if x %}never closed", 3, 23, "end of template"),
            ("subject", "Hi {{ a b }}", 1, 9, "got 'b'"),
            ("text", 'one\n{{ "abc }}', 2, 4, "unexpected char"),
            ("html", "{{ x|nofilter }}", 1, 6, "No filter named 'nofilter'"),
            ("html", "{% if x %}{{ x|nofilter }}{% endif %}", 1, 16, "No filter named 'nofilter'"),
            ("text", "{% if x is nottest %}{% endif %}", 1, 12, "No test named 'nottest'"),
            ("html", '{% extends "base" %}', 1, 4, "{% extends %} is not supported"),
            ("html", "{% include data.which %}", 1, 4, "needs the partial's key as a literal"),
        ],
    )
    async def test_reported_with_field_line_and_column(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        field: str,
        source: str,
        line: int,
        column: int,
        message: str,
    ) -> None:
        body = problem(
            await _save(client, admin_actor, **{field: source}), 422, "template_syntax_error"
        )
        [error] = body["errors"]
        assert error["field"] == field
        assert (error["line"], error["column"]) == (line, column)
        assert message in error["message"]
        assert body["detail"].startswith(f"{field}, line {line}, column {column}: ")

    async def test_every_faulty_field_is_listed(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await _save(
            client,
            admin_actor,
            subject="{{ a b }}",
            html="<p>{{ x }</p>",
            text="{% for %}",
            headers={"X-Tag": "{{ }}"},
        )
        errors = problem(response, 422, "template_syntax_error")["errors"]
        assert [e["field"] for e in errors] == ["headers.X-Tag", "html", "subject", "text"]

    async def test_header_values_are_checked_and_cannot_hold_line_breaks(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        injected = await _save(client, admin_actor, headers={"X-A": "a\r\nBcc: x@example.com"})
        problem(injected, 422, "validation_error")
        reserved = await _save(client, admin_actor, headers={"Bcc": "x@example.com"})
        assert "headers.Bcc" in problem(reserved, 422, "invalid_template")["detail"]


class TestSecurityErrorsOnSave:
    @pytest.mark.parametrize(
        ("source", "line", "column"),
        [
            ("{{ ''.__class__ }}", 1, 7),
            ("line\n  {{ cycler.__init__.__globals__ }}", 2, 13),
            ("{{ x['__class__'] }}", 1, 6),
        ],
    )
    async def test_private_attributes_are_refused_when_saved(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        source: str,
        line: int,
        column: int,
    ) -> None:
        body = problem(
            await _save(client, admin_actor, html=source), 422, "template_security_error"
        )
        error = body["errors"][0]
        assert (error["field"], error["line"], error["column"]) == ("html", line, column)


class TestRenderErrors:
    def test_undefined_variable_in_strict_mode_names_it(self) -> None:
        with pytest.raises(TemplateUndefinedVariable) as caught:
            render_text("Hello\n  {{ contact.first_name }} {{ coupon }}", strict=True)
        [error] = caught.value.errors
        assert error["name"] == "first_name"
        assert (error["line"], error["column"]) == (2, 14)
        with pytest.raises(TemplateUndefinedVariable) as caught:
            render_text("a {{ coupon }}", strict=True)
        assert caught.value.errors[0]["name"] == "coupon"
        assert caught.value.errors[0]["column"] == 6

    def test_sandbox_violation_through_a_filter_has_its_line(self) -> None:
        with pytest.raises(TemplateSecurityError) as caught:
            render_text("ok\nok\n{{ x|attr('__class__') }}", x=1)
        assert caught.value.errors[0]["line"] == 3
        assert caught.value.errors[0]["column"] == 12

    def test_other_failures_are_render_errors_at_their_line(self) -> None:
        with pytest.raises(TemplateRenderError) as caught:
            render_text("a\n\nb {{ 1 / data.n }}", n=0)
        error = caught.value.errors[0]
        assert (error["line"], error["column"]) == (3, 3)
        assert "division by zero" in error["message"]


class TestMjml:
    async def test_mjml_is_compiled_to_the_stored_html(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        mjml = (
            "<mjml><mj-body><mj-section><mj-column>"
            "<mj-text>Hi {{ first_name|default('there') }}</mj-text>"
            '<mj-button href="{{ data.url }}">Open</mj-button>'
            "</mj-column></mj-section></mj-body></mjml>"
        )
        created = await create_template(client, admin_actor, key="m", subject="s", mjml=mjml)
        version = created["active_version"]
        assert version["mjml"] == mjml
        assert version["html"].startswith("<!doctype html>")
        assert "Hi {{ first_name|default('there') }}" in version["html"]
        preview = await client.post(
            "/v1/templates/m/preview",
            headers=admin_actor.headers,
            json={"data": {"url": "https://x.example.com/a"}},
        )
        assert preview.status_code == 200, preview.text
        html = preview.json()["html"]
        assert "Hi there" in html
        assert 'href="https://x.example.com/a"' in html
        assert preview.json()["text"].startswith("Hi there")

    @pytest.mark.parametrize(
        ("mjml", "line", "column", "message"),
        [
            (
                "<mjml>\n<mj-body>\n  <mj-section></mj-column></mj-section>\n</mj-body></mjml>",
                3,
                15,
                "unexpected token",
            ),
            (
                "<mjml>\n<mj-body>\n <mj-section>\n  <mj-column>\n<mj-text>x</mj-column>"
                "</mj-section></mj-body></mjml>",
                5,
                1,
                "unexpected end",
            ),
            ('<mjml><mj-body><mj-include path="/etc/passwd" /></mj-body></mjml>', 1, 17, "include"),
        ],
    )
    async def test_mjml_errors_have_field_line_and_column(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        mjml: str,
        line: int,
        column: int,
        message: str,
    ) -> None:
        body = problem(await _save(client, admin_actor, mjml=mjml), 422, "template_syntax_error")
        [error] = body["errors"]
        assert (error["field"], error["line"], error["column"]) == ("mjml", line, column)
        assert message in error["message"]

    async def test_jinja_errors_in_mjml_point_into_the_mjml(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        mjml = "<mjml><mj-body>\n<mj-text>{{ oops }</mj-text>\n</mj-body></mjml>"
        body = problem(await _save(client, admin_actor, mjml=mjml), 422, "template_syntax_error")
        assert (body["errors"][0]["field"], body["errors"][0]["line"]) == ("mjml", 2)

    async def test_mjml_and_html_together_are_refused(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await _save(client, admin_actor, html="<p>x</p>", mjml="<mjml></mjml>")
        problem(response, 422, "invalid_template")


class TestKindRules:
    @pytest.mark.parametrize(
        ("body", "says"),
        [
            ({"key": "t", "name": "T", "html": "<p>x</p>"}, "subject: a template needs a subject"),
            ({"key": "t", "name": "T", "subject": "s"}, "give html, text or mjml"),
            ({"key": "l", "name": "L", "kind": "layout", "html": "<p>no content</p>"}, "content"),
            (
                {
                    "key": "l",
                    "name": "L",
                    "kind": "layout",
                    "html": "{{ content }}",
                    "subject": "s",
                },
                "a layout has no subject",
            ),
            (
                {"key": "p", "name": "P", "kind": "partial", "text": "x", "layout": "base"},
                "a partial has no layout",
            ),
            (
                {"key": "p", "name": "P", "kind": "partial", "mjml": "<mjml></mjml>"},
                "a partial is a fragment",
            ),
        ],
    )
    async def test_each_kind_has_its_fields(
        self, client: httpx.AsyncClient, admin_actor: Actor, body: dict[str, Any], says: str
    ) -> None:
        response = await client.post("/v1/templates", headers=admin_actor.headers, json=body)
        assert says in problem(response, 422, "invalid_template")["detail"]

    async def test_sender_addresses_and_header_names_are_checked(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        bad_sender = await _save(client, admin_actor, from_email="not-an-address")
        assert "from_email" in problem(bad_sender, 422, "invalid_email")["detail"]
        bad_reply = await _save(client, admin_actor, reply_to="a@b@c.example.com")
        assert "reply_to" in problem(bad_reply, 422, "invalid_email")["detail"]
        bad_name = await _save(client, admin_actor, headers={"X Bad": "v"})
        assert "headers.X Bad" in problem(bad_name, 422, "invalid_template")["detail"]
        twice = await _save(client, admin_actor, headers={"X-A": "1", "x-a": "2"})
        assert "given twice" in problem(twice, 422, "invalid_template")["detail"]

    async def test_sources_over_the_size_limit_are_refused(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await _save(client, admin_actor, text="x" * 600_000)
        assert "524288 bytes" in problem(response, 422, "invalid_template")["detail"]


class TestReferences:
    async def test_missing_partials_and_layouts_are_reported_where_they_are_named(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await _save(
            client,
            admin_actor,
            html='<p>x</p>\n  {% include "footer" %}{% include "maybe" ignore missing %}',
            layout="base",
        )
        errors = problem(response, 422, "template_reference_invalid")["errors"]
        assert errors == [
            {
                "field": "html",
                "line": 2,
                "column": 6,
                "message": "no template 'footer' in this workspace",
                "key": "footer",
            },
            {
                "field": "layout",
                "line": None,
                "column": None,
                "message": "no template 'base' in this workspace",
                "key": "base",
            },
        ]

    async def test_a_reference_to_the_wrong_kind_or_an_archived_one_is_refused(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        await create_template(client, admin_actor, key="base", kind="layout", html="{{ content }}")
        await create_template(client, admin_actor, key="old", kind="partial", text="x")
        await client.delete("/v1/templates/old", headers=admin_actor.headers)
        response = await _save(
            client, admin_actor, html='{% include "base" %}{% include "old" %}', layout="old"
        )
        messages = [
            e["message"] for e in problem(response, 422, "template_reference_invalid")["errors"]
        ]
        assert messages == [
            "'base' is a layout, not a partial",
            "'old' is archived",
            "'old' is a partial, not a layout",
        ]

    async def test_a_partial_cannot_include_itself(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.post(
            "/v1/templates",
            headers=admin_actor.headers,
            json={"key": "p", "name": "P", "kind": "partial", "text": '{% include "p" %}'},
        )
        problem(response, 422, "template_reference_invalid")

    async def test_another_workspaces_partial_cannot_be_included(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        other_workspace_actor: Actor,
    ) -> None:
        await create_template(
            client, other_workspace_actor, key="secret", kind="partial", text="globex secret"
        )
        response = await _save(client, admin_actor, text='{% include "secret" %}')
        errors = problem(response, 422, "template_reference_invalid")["errors"]
        assert errors[0]["message"] == "no template 'secret' in this workspace"

    async def test_each_workspace_renders_its_own_partial_of_the_same_key(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        other_workspace_actor: Actor,
    ) -> None:
        for actor, words in (
            (admin_actor, "acme footer"),
            (other_workspace_actor, "globex footer"),
        ):
            await create_template(client, actor, key="footer", kind="partial", text=words)
            await create_template(
                client, actor, key="mail", subject="s", text='body {% include "footer" %}'
            )
        for actor, words in (
            (admin_actor, "acme footer"),
            (other_workspace_actor, "globex footer"),
        ):
            preview = await client.post(
                "/v1/templates/mail/preview", headers=actor.headers, json={}
            )
            assert preview.json()["text"] == f"body {words}"
