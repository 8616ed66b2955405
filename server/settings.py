"""All configuration, from the environment and `.env` (see `.env.example`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("codebase-mcp"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True)

    # --- PostgreSQL ---
    database_url: str | None = Field(
        default=None,
        description="Server for project databases. Unset: an embedded PostgreSQL is started.",
    )
    registry_database_url: str | None = Field(
        default=None, description="Database holding the project registry. Unset: derived from DATABASE_URL."
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir, validation_alias=AliasChoices("CODEBASE_MCP_DATA_DIR", "DATA_DIR")
    )
    embedded_pg_port: int = Field(default=0, ge=0, le=65535, description="0: Unix socket only.")
    pool_min_size: int = Field(default=0, ge=0)
    pool_max_size: int = Field(default=8, ge=1)
    pool_idle_seconds: float = Field(default=10.0, gt=0, description="Idle pooled connections close after this.")
    max_db_connections: int = Field(default=40, ge=4, description="PostgreSQL connections per process, at most.")

    # --- projects ---
    default_project: str = "default"
    auto_create_projects: bool = True
    max_projects: int = Field(default=1000, ge=1, description="Projects (databases) the registry may hold.")

    # --- embeddings ---
    embedding_provider: Literal["local", "ollama", "openai"] = "local"
    embedding_model: str | None = None
    embedding_base_url: str | None = None
    embedding_api_key: str | None = None
    embedding_batch_size: int = Field(default=16, ge=1, le=1024)
    embedding_max_length: int = Field(default=64, ge=8, le=8192)
    embedding_threads: int | None = Field(default=None, ge=1)
    embedding_dimension: int | None = Field(default=None, ge=1, description="Remote providers: skip the probe.")
    embedding_models_dir: Path | None = Field(
        default=None, description="Cache of the derived local model. Unset: <data_dir>/models."
    )
    static_tier: bool = Field(
        default=True, description="Give every chunk a static-tier vector when it is stored (semantic search at once)."
    )
    query_adapter: bool = Field(
        default=True,
        description="Map local-model query vectors through the learned query adapter (queries only; no re-index).",
    )
    embedding_max_concurrency: int = Field(default=4, ge=1, le=64, description="Remote requests in flight.")

    @property
    def models_dir(self) -> Path:
        """Where the derived (code-tuned and s8) local models are cached."""
        return self.embedding_models_dir or self.data_dir / "models"

    # --- indexing ---
    max_file_size_bytes: int = Field(default=1_048_576, ge=1)
    allowed_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)

    # --- background indexing ---
    # Slots for `index` jobs (whole repositories), across every process sharing the database.
    max_concurrent_indexing_jobs: int = Field(default=2, ge=1)
    # A separate budget for `refresh` jobs (changed paths, seconds each): a refresh never waits
    # for a long index job's slot, and refreshes never take the slots index jobs need.
    max_concurrent_refresh_jobs: int = Field(default=2, ge=1)
    indexing_job_timeout_seconds: int = Field(default=3600, ge=1)
    job_status_retention_days: int = Field(default=7, ge=0)
    max_repo_size_gb: float = Field(default=10, gt=0)
    progress_update_interval_seconds: float = Field(default=2.0, ge=0)
    cancellation_check_interval_seconds: float = Field(default=5.0, gt=0)
    heartbeat_interval_seconds: float = Field(default=5.0, gt=0)
    stale_job_seconds: float = Field(default=30.0, gt=0)
    worker_poll_interval_seconds: float = Field(default=30.0, gt=0)
    run_workers_in_server: bool = True

    # --- watching (server/watch/) ---
    watch_repositories: bool = Field(default=True, description="Watch indexed repositories in `serve`.")
    watch_debounce_ms: int = Field(default=200, ge=10, le=60_000)
    watch_max_batch_ms: int = Field(default=2000, ge=10, le=600_000)
    watch_mass_change_files: int = Field(default=200, ge=1)
    watch_lease_retry_seconds: float = Field(default=5.0, gt=0)
    watch_rescan_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How often each project's repository list is read again for repositories indexed by other "
        "processes (runs in this process are seen at once); each read is one short-lived connection.",
    )
    watch_root_check_seconds: float = Field(default=2.0, gt=0)

    # --- HTTP ---
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8765, ge=0, le=65535)
    http_auth_token: SecretStr | None = Field(
        default=None, description="Bearer token for /mcp and /web/api. Unset: generated once, kept in the data dir."
    )
    http_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Host headers accepted besides localhost/127.0.0.1/[::1] on the port."
    )
    http_allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Browser origins accepted besides http://localhost etc. on the port."
    )

    debug: bool = Field(
        default=False,
        description="Show failed jobs' tracebacks and internal errors' type and message to clients.",
    )

    # --- logs ---
    log_level: Annotated[str, Field(description="DEBUG, INFO, WARNING (default), ERROR or CRITICAL")] = "WARNING"
    log_file: Path | None = Field(default=None, description="Append logs to this file instead of stderr.")

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value: object) -> object:
        if isinstance(value, str):
            level = value.strip().upper()
            if level not in LOG_LEVELS:
                raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
            return level
        return value

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return [p for p in value.split(":") if p]
        return value

    @field_validator("http_allowed_hosts", "http_allowed_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("http_auth_token", mode="after")
    @classmethod
    def _token_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None  # HTTP_AUTH_TOKEN= (empty) means "generate one"
        secret = value.get_secret_value()
        if len(secret) < 16 or not all("!" <= ch <= "~" for ch in secret):
            raise ValueError(
                "HTTP_AUTH_TOKEN must be at least 16 visible ASCII characters, no spaces (or unset, to have one "
                "generated)"
            )
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
