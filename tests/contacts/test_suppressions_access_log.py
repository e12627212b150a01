"""Access log lines of routes with an email address in the path carry the
route template, never the address; other routes keep their real path."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.fixtures.actors import Actor

ADDRESS = "private.person@example.com"


def access_lines(captured: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in captured.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "http.request"]


class TestAccessLog:
    @pytest.mark.parametrize(
        ("method", "path", "template", "body"),
        [
            ("PUT", f"/v1/contacts/by-email/{ADDRESS}", "/v1/contacts/by-email/{email}", {}),
            ("GET", f"/v1/suppressions/{ADDRESS}", "/v1/suppressions/{address}", None),
            ("DELETE", f"/v1/suppressions/{ADDRESS}", "/v1/suppressions/{address}", None),
        ],
    )
    async def test_an_address_in_the_path_never_reaches_the_log(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        capsys: pytest.CaptureFixture[str],
        method: str,
        path: str,
        template: str,
        body: dict[str, Any] | None,
    ) -> None:
        capsys.readouterr()
        response = await client.request(method, path, headers=admin_actor.headers, json=body)
        assert response.status_code < 500, response.text

        captured = capsys.readouterr().err
        [line] = [line for line in access_lines(captured) if line["route"] == template]
        assert line["path"] == template
        assert line["method"] == method
        assert line["status"] == response.status_code
        assert ADDRESS not in json.dumps(access_lines(captured))

    async def test_other_routes_log_their_real_path(
        self,
        client: httpx.AsyncClient,
        admin_actor: Actor,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        capsys.readouterr()
        await client.get("/v1/suppressions?reason=bounced", headers=admin_actor.headers)
        missing = "/v1/contacts/01a21938-38f4-7d4c-9eb6-706d7b5c6766"
        await client.get(missing, headers=admin_actor.headers)

        lines = access_lines(capsys.readouterr().err)
        assert [(line["path"], line["status"]) for line in lines] == [
            ("/v1/suppressions", 200),
            (missing, 404),
        ]


class TestAuditLog:
    async def test_an_address_in_the_path_never_reaches_the_audit_log(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.put(
            f"/v1/contacts/by-email/{ADDRESS}", headers=admin_actor.headers, json={}
        )
        assert response.status_code in (200, 201), response.text

        entries = await client.get("/v1/audit-log", headers=admin_actor.headers)
        assert entries.status_code == 200, entries.text
        targets = [e["target"] for e in entries.json()["data"]]
        assert "/v1/contacts/by-email/{email}" in targets
        assert ADDRESS not in entries.text
