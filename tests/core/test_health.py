from __future__ import annotations

import httpx


class TestHealth:
    async def test_healthz_answers_without_a_database_call(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    async def test_readyz_reports_database_and_migrations_ok(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/readyz")
        assert response.status_code == 200, response.text
        assert response.json()["checks"] == {"database": "ok", "migrations": "ok"}

    async def test_metrics_exposes_http_latency_by_route(self, client: httpx.AsyncClient) -> None:
        await client.get("/healthz")
        body = (await client.get("/metrics")).text
        assert (
            'sendstream_http_request_duration_seconds_count{method="GET",route="/healthz"' in body
        )

    async def test_every_response_carries_a_request_id(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz", headers={"X-Request-Id": "abc123"})
        assert response.headers["x-request-id"] == "abc123"


class TestProblemJson:
    async def test_unknown_route_is_a_problem_with_a_code(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/nowhere")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "not_found"
