from __future__ import annotations

from pathlib import Path

import pytest

from sendstream.core.settings import Settings


class TestSettingsSources:
    def test_environment_variables_use_the_sendstream_prefix(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SENDSTREAM_DATABASE_URL", "postgresql://db.example/x")
        monkeypatch.setenv("SENDSTREAM_API__RATE_LIMIT_BURST", "7")
        settings = Settings()
        assert settings.database_url == "postgresql://db.example/x"
        assert settings.api.rate_limit_burst == 7

    def test_toml_file_is_read_and_environment_wins_over_it(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        config = tmp_path / "sendstream.toml"
        config.write_text("[api]\nport = 9123\nrate_limit_burst = 3\n[jobs]\nconcurrency = 4\n")
        monkeypatch.setenv("SENDSTREAM_CONFIG", str(config))
        monkeypatch.setenv("SENDSTREAM_API__RATE_LIMIT_BURST", "9")
        settings = Settings()
        assert settings.api.port == 9123
        assert settings.jobs.concurrency == 4
        assert settings.api.rate_limit_burst == 9

    def test_a_wrong_type_names_the_setting(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SENDSTREAM_API__PORT", "eighty")
        with pytest.raises(ValueError, match=r"api\.port"):
            Settings()
