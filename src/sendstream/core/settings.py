"""One settings tree for every process role.

Values come from, highest first: keyword arguments (tests), `SENDSTREAM_*`
environment variables (nested groups with `__`, e.g.
`SENDSTREAM_API__RATE_LIMIT_PER_SECOND`), a TOML file named by
`SENDSTREAM_CONFIG` (default `./sendstream.toml` when present), then defaults.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class DatabaseSettings(BaseModel):
    pool_size: int = 10
    max_overflow: int = 10
    # Seconds a request waits for a pooled connection before answering 503.
    pool_timeout: float = 5.0
    # Seconds a single statement may run before PostgreSQL cancels it.
    statement_timeout: float = 30.0
    connect_timeout: float = 5.0


class EmbeddedSettings(BaseModel):
    # Folder holding the embedded PostgreSQL data directory (`pg/`); relative
    # paths are resolved against the working directory.
    data_dir: Path = Path(".sendstream")
    database_name: str = "sendstream"


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    # Public base URL, used in links the API prints (docs, tracking later on).
    public_url: str | None = None
    # Largest accepted request body in bytes; larger bodies get 413.
    max_body_bytes: int = 1_048_576
    # Largest file upload (contact imports), for the routes that take files.
    max_upload_bytes: int = 1_073_741_824
    # Token bucket per API key: steady refill rate and burst size.
    rate_limit_per_second: float = 50.0
    rate_limit_burst: int = 100
    # Cursor pages: default and ceiling for `limit`.
    page_default_limit: int = 50
    page_max_limit: int = 500
    # How long a stored Idempotency-Key response is replayed.
    idempotency_ttl_hours: int = 24
    # Seconds clients are told to wait when the database is unreachable.
    unavailable_retry_after: int = 5


class JobSettings(BaseModel):
    # Jobs claimed per round trip by one worker process.
    batch_size: int = 200
    # Concurrent jobs one worker process runs at once.
    concurrency: int = 50
    # Seconds a claimed job stays leased; heartbeats extend it while it runs.
    lease_seconds: float = 30.0
    # Fallback wake-up when no NOTIFY arrives (scheduled jobs, lost notifies).
    poll_interval: float = 2.0
    default_max_attempts: int = 10
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 3600.0
    # Finished jobs (succeeded, cancelled, dead) are deleted after this long.
    retention_hours: int = 72
    # On SIGTERM, seconds running jobs get to finish before they are given back.
    shutdown_grace_seconds: float = 10.0


class LogSettings(BaseModel):
    level: str = "INFO"
    format: Literal["json", "console"] = "json"


class SecuritySettings(BaseModel):
    # Master key for secrets at rest (base64, 32 bytes). Older keys stay in
    # `previous_keys` so rotation never strands a stored secret.
    master_key: SecretStr | None = None
    previous_keys: list[SecretStr] = Field(default_factory=list)


class MailSettings(BaseModel):
    """The SMTP relay for mail the platform sends itself (double opt-in
    confirmations). The delivery domain replaces this with its own transports;
    until then one relay, reached with aiosmtplib, is all there is."""

    host: str = "127.0.0.1"
    port: int = 25
    username: str | None = None
    password: SecretStr | None = None
    # Upgrade the connection with STARTTLS (port 587); `use_tls` is implicit
    # TLS from the first byte (port 465). Both off: plain SMTP on loopback.
    starttls: bool = False
    use_tls: bool = False
    # Seconds one SMTP conversation may take before the job fails and retries.
    timeout: float = 30.0
    from_address: str = "Sendstream <no-reply@localhost>"
    # Base URL of links in mails (`https://mail.example.com`); falls back to
    # `api.public_url`, then to http://<api.host>:<api.port>.
    public_url: str | None = None
    # Hours a confirmation link stays valid.
    confirmation_ttl_hours: int = 72


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SENDSTREAM_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    environment: Literal["development", "production", "test"] = "development"
    # PostgreSQL URL; when unset, an embedded server is started under
    # `embedded.data_dir`.
    database_url: str | None = None
    # Redis URL; when set, rate limit buckets are shared by every server process.
    redis_url: str | None = None

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    embedded: EmbeddedSettings = Field(default_factory=EmbeddedSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    mail: MailSettings = Field(default_factory=MailSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("SENDSTREAM_CONFIG", "sendstream.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)


_override: list[Settings] = []


@lru_cache(maxsize=1)
def _from_environment() -> Settings:
    return Settings()


def get_settings() -> Settings:
    """The process-wide settings: an override if one is installed, else the environment."""
    return _override[0] if _override else _from_environment()


def override_settings(settings: Settings | None) -> None:
    """Install settings for this process (tests, child processes); None goes back
    to reading the environment afresh."""
    _override.clear()
    _from_environment.cache_clear()
    if settings is not None:
        _override.append(settings)
