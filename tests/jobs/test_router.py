"""The jobs API over HTTP: scoped to the caller's workspace, cursor pages,
retry and cancel with their conflicts."""

from __future__ import annotations

import httpx
import pytest

from sendstream.core.db import Database
from tests.fixtures.actors import Actor, MakeActor
from tests.jobs.helpers import job_state, make_job


class TestListJobs:
    async def test_lists_only_the_callers_workspace_newest_first(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        other_workspace_actor: Actor,
    ) -> None:
        mine = [await make_job(db, workspace_id=admin_actor.workspace_id) for _ in range(3)]
        await make_job(db, workspace_id=other_workspace_actor.workspace_id)
        await make_job(db, "system.thing")
        response = await client.get("/v1/jobs", headers=admin_actor.headers)
        assert response.status_code == 200, response.text
        assert [j["id"] for j in response.json()["data"]] == mine[::-1]

    async def test_filters_by_state_and_kind(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        ws = admin_actor.workspace_id
        dead = await make_job(db, "test.fail", workspace_id=ws, state="dead")
        await make_job(db, "test.record", workspace_id=ws, state="dead")
        await make_job(db, "test.fail", workspace_id=ws)
        response = await client.get(
            "/v1/jobs", params={"state": "dead", "kind": "test.fail"}, headers=admin_actor.headers
        )
        assert [j["id"] for j in response.json()["data"]] == [dead]
        assert response.json()["data"][0]["last_error"] == "ValueError: boom"

    async def test_pages_with_a_cursor(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        ids = [await make_job(db, workspace_id=admin_actor.workspace_id) for _ in range(5)]
        seen: list[int] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            body = (await client.get("/v1/jobs", params=params, headers=admin_actor.headers)).json()
            seen += [j["id"] for j in body["data"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == ids[::-1]

    async def test_unknown_state_is_a_validation_error(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.get(
            "/v1/jobs", params={"state": "exploded"}, headers=admin_actor.headers
        )
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    async def test_forged_cursor_is_refused(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        # base64url of {"id":"x"}
        response = await client.get(
            "/v1/jobs", params={"cursor": "eyJpZCI6IngifQ"}, headers=admin_actor.headers
        )
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_cursor"


class TestGetJob:
    async def test_reads_a_job_of_the_callers_workspace(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        job_id = await make_job(db, workspace_id=admin_actor.workspace_id, payload={"c": 1})
        response = await client.get(f"/v1/jobs/{job_id}", headers=admin_actor.headers)
        assert response.status_code == 200
        body = response.json()
        assert (body["id"], body["state"], body["payload"]) == (job_id, "queued", {"c": 1})

    async def test_job_of_another_workspace_is_not_found(
        self,
        client: httpx.AsyncClient,
        db: Database,
        admin_actor: Actor,
        other_workspace_actor: Actor,
    ) -> None:
        job_id = await make_job(db, workspace_id=other_workspace_actor.workspace_id)
        for method, path in [
            ("GET", f"/v1/jobs/{job_id}"),
            ("POST", f"/v1/jobs/{job_id}/retry"),
            ("POST", f"/v1/jobs/{job_id}/cancel"),
        ]:
            response = await client.request(method, path, headers=admin_actor.headers)
            assert response.status_code == 404, (method, path)
            assert response.json()["code"] == "job_not_found"
        assert (await job_state(db, job_id))["state"] == "queued"

    async def test_system_job_is_not_visible_through_the_api(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        job_id = await make_job(db, "system.cleanup")
        response = await client.get(f"/v1/jobs/{job_id}", headers=admin_actor.headers)
        assert response.status_code == 404

    async def test_out_of_range_id_is_a_validation_error(
        self, client: httpx.AsyncClient, admin_actor: Actor
    ) -> None:
        response = await client.get(f"/v1/jobs/{2**64}", headers=admin_actor.headers)
        assert response.status_code == 422


class TestRetryAndCancel:
    async def test_dead_job_is_retried(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        job_id = await make_job(db, workspace_id=admin_actor.workspace_id, state="dead")
        response = await client.post(f"/v1/jobs/{job_id}/retry", headers=admin_actor.headers)
        assert response.status_code == 200, response.text
        assert (response.json()["state"], response.json()["attempts"]) == ("queued", 0)
        assert (await job_state(db, job_id))["state"] == "queued"

    @pytest.mark.parametrize(
        ("state", "code"), [("running", "job_running"), ("succeeded", "job_succeeded")]
    )
    async def test_retry_of_a_running_or_succeeded_job_conflicts(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor, state: str, code: str
    ) -> None:
        job_id = await make_job(db, workspace_id=admin_actor.workspace_id, state=state)
        response = await client.post(f"/v1/jobs/{job_id}/retry", headers=admin_actor.headers)
        assert response.status_code == 409
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == code

    async def test_queued_job_is_cancelled(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        job_id = await make_job(db, workspace_id=admin_actor.workspace_id)
        response = await client.post(f"/v1/jobs/{job_id}/cancel", headers=admin_actor.headers)
        assert response.status_code == 200
        assert response.json()["state"] == "cancelled"
        assert (await job_state(db, job_id))["state"] == "cancelled"

    async def test_cancel_of_a_finished_job_conflicts(
        self, client: httpx.AsyncClient, db: Database, admin_actor: Actor
    ) -> None:
        job_id = await make_job(db, workspace_id=admin_actor.workspace_id, state="succeeded")
        response = await client.post(f"/v1/jobs/{job_id}/cancel", headers=admin_actor.headers)
        assert response.status_code == 409
        assert response.json()["code"] == "job_finished"


class TestScopes:
    async def test_read_scope_cannot_retry_or_cancel(
        self, client: httpx.AsyncClient, db: Database, make_actor: MakeActor
    ) -> None:
        reader = await make_actor(scopes=["jobs:read"])
        job_id = await make_job(db, workspace_id=reader.workspace_id, state="dead")
        assert (await client.get("/v1/jobs", headers=reader.headers)).status_code == 200
        for action in ("retry", "cancel"):
            response = await client.post(f"/v1/jobs/{job_id}/{action}", headers=reader.headers)
            assert response.status_code == 403
            assert response.json()["code"] == "missing_scope"
        assert (await job_state(db, job_id))["state"] == "dead"

    async def test_key_without_jobs_scope_cannot_list(
        self, client: httpx.AsyncClient, make_actor: MakeActor
    ) -> None:
        actor = await make_actor(scopes=["contacts:read"])
        response = await client.get("/v1/jobs", headers=actor.headers)
        assert response.status_code == 403

    async def test_anonymous_request_is_refused(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/v1/jobs")).status_code == 401
