"""`sendstream up` and `sendstream server` as an operator runs them."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import URL

from sendstream.core.settings import Settings
from tests.fixtures.processes import clean_env, free_port, start_cli, stop, wait_http

pytestmark = pytest.mark.slow


class TestUp:
    def test_up_on_the_embedded_server_prints_a_working_key_and_keeps_data(
        self, tmp_path: Path
    ) -> None:
        port = free_port()
        env = clean_env(SENDSTREAM_EMBEDDED__DATA_DIR=str(tmp_path / "state"))
        log = tmp_path / "up.log"
        proc = start_cli(["up", "--port", str(port)], env, tmp_path, log)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", proc, log)
            deadline = time.monotonic() + 30
            while "Stop" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            banner = log.read_text()
            match = re.search(r"API key\s+(\S+)", banner)
            assert match, banner
            key = match.group(1)
            assert f"http://127.0.0.1:{port}/v1/docs" in banner
            response = httpx.get(
                f"http://127.0.0.1:{port}/v1/workspace",
                headers={"Authorization": f"Bearer {key}"},
            )
            assert response.status_code == 200, response.text
            assert response.json()["slug"] == "default"
            assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        finally:
            assert stop(proc) == 0, log.read_text()

        # A restart reuses the data folder: the key still works, none is printed.
        log2 = tmp_path / "up2.log"
        proc = start_cli(["up", "--port", str(port)], env, tmp_path, log2)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", proc, log2)
            response = httpx.get(
                f"http://127.0.0.1:{port}/v1/workspace",
                headers={"Authorization": f"Bearer {key}"},
            )
            assert response.status_code == 200
            assert key not in log2.read_text()
        finally:
            stop(proc)


class TestServer:
    def test_server_logs_one_json_object_per_line_with_the_request_id(
        self, tmp_path: Path, settings: Settings, database_url: URL
    ) -> None:
        port = free_port()
        assert settings.database_url
        env = clean_env(SENDSTREAM_DATABASE_URL=settings.database_url)
        log = tmp_path / "server.log"
        proc = start_cli(["server", "--port", str(port)], env, tmp_path, log)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", proc, log)
            response = httpx.get(
                f"http://127.0.0.1:{port}/readyz", headers={"X-Request-Id": "trace-me-1"}
            )
            assert response.status_code == 200
            assert response.headers["x-request-id"] == "trace-me-1"
        finally:
            stop(proc)
        lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
        records = [json.loads(line) for line in lines]
        request_lines = [r for r in records if r.get("request_id") == "trace-me-1"]
        assert request_lines, log.read_text()
        assert request_lines[-1]["event"] == "http.request"
        assert request_lines[-1]["route"] == "/readyz"
        assert request_lines[-1]["status"] == 200
