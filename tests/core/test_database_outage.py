"""The database going away under load: the API answers 503 with Retry-After
meanwhile, applies nothing half-way, and recovers by itself."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import URL

from tests.fixtures.processes import clean_env, free_port, start_cli, stop, wait_http
from tests.fixtures.tcp_proxy import proxied_database

pytestmark = pytest.mark.slow


class TestServerDuringOutage:
    def test_server_answers_503_with_retry_after_then_recovers(
        self, tmp_path: Path, database_url: URL
    ) -> None:
        with proxied_database(database_url) as (proxy, url):
            port = free_port()
            env = clean_env(
                SENDSTREAM_DATABASE_URL=url.render_as_string(hide_password=False),
                SENDSTREAM_DATABASE__CONNECT_TIMEOUT="2",
                SENDSTREAM_DATABASE__POOL_TIMEOUT="2",
            )
            log = tmp_path / "server.log"
            proc = start_cli(["server", "--port", str(port)], env, tmp_path, log)
            base = f"http://127.0.0.1:{port}"
            try:
                wait_http(f"{base}/healthz", proc, log)
                assert httpx.get(f"{base}/readyz").status_code == 200

                proxy.cut()
                during = [
                    httpx.get(f"{base}/v1/workspace", headers=_AUTH, timeout=15) for _ in range(5)
                ]
                ready = httpx.get(f"{base}/readyz", timeout=15)
                for response in during:
                    assert response.status_code == 503, response.text
                    assert response.headers["content-type"] == "application/problem+json"
                    assert response.json()["code"] == "database_unavailable"
                    assert int(response.headers["retry-after"]) >= 1
                assert ready.status_code == 503
                assert httpx.get(f"{base}/healthz").status_code == 200

                proxy.restore()
                deadline = time.monotonic() + 30
                status = 0
                while time.monotonic() < deadline:
                    status = httpx.get(f"{base}/v1/workspace", headers=_AUTH).status_code
                    if status != 503:
                        break
                    time.sleep(0.2)
                # Back to normal answers: an unknown key is a 401 again, which
                # needs the database to tell.
                assert status == 401
                assert httpx.get(f"{base}/readyz").status_code == 200
            finally:
                stop(proc)


# Well-formed (ss_<12 hex>_<43 base64url>) but unknown: a malformed key is
# refused without a database lookup, so it would not show the outage.
_AUTH = {"Authorization": "Bearer ss_0123456789ab_" + "A" * 43}
