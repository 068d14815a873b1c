"""Settings: one pydantic-settings object, every field read from a FRAMEFLEET_ environment variable.

docs/configuration.md lists each setting with its default; keep the two in step.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"", "change-me", "dev-secret", "secret", "changeme"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRAMEFLEET_", extra="ignore")

    env: Literal["dev", "test", "prod"] = "dev"
    data_dir: Path = Path(".data")
    database_url: str = ""
    redis_url: str = "redis://127.0.0.1:6390/0"
    secret_key: str = "dev-secret"

    # Storage: file:// URIs must resolve inside one of these roots (default: <data_dir>/media).
    storage_roots: list[Path] = Field(default_factory=list)
    output_root: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    http_allow_private: bool = False
    http_max_bytes: int = 10 * 1024**3
    http_timeout_seconds: float = 60.0

    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_url: str = ""
    sse_keepalive_seconds: float = 15.0
    # An authenticated key is remembered this long per API process; a revoked key works at most this long.
    api_key_cache_seconds: float = 5.0

    # Worker
    pool: Literal["cpu", "gpu"] = "cpu"
    worker_concurrency: int = 1
    ffmpeg_path: str = ""
    ffmpeg_threads: int = 0
    job_max_seconds: int = 6 * 3600
    progress_event_interval: float = 0.5
    progress_db_interval: float = 2.0
    cancel_poll_interval: float = 0.2
    work_dir: Path | None = None
    events_ttl_seconds: int = 7 * 24 * 3600

    # Embedded stack (`framefleet up`)
    flower_port: int = 5555
    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        self.data_dir = self.data_dir.resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'framefleet.db'}"
        if not self.storage_roots:
            self.storage_roots = [self.data_dir / "media"]
        self.storage_roots = [p.resolve() for p in self.storage_roots]
        if not self.output_root:
            self.output_root = (self.storage_roots[0] / "outputs").as_uri()
        if not self.public_url:
            self.public_url = f"http://{self.api_host}:{self.api_port}"
        if self.env == "prod" and self.secret_key.strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("FRAMEFLEET_SECRET_KEY must be set to a real secret when FRAMEFLEET_ENV=prod")
        return self

    @property
    def work_root(self) -> Path:
        return (self.work_dir or self.data_dir / "work").resolve()

    @property
    def visibility_timeout(self) -> int:
        """Broker visibility timeout: above the longest allowed job so a long job is never redelivered."""
        return self.job_max_seconds + 3600


@lru_cache
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()
