"""Typed tool outputs (they become MCP output schemas)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from server.jobs.models import IndexingJobProgress, IndexingJobStatus


class StartIndexingResult(BaseModel):
    job_id: str = Field(description="Use with get_indexing_status, watch_indexing or cancel_indexing_background")
    status: IndexingJobStatus = Field(description="pending for a new job; the current status when coalesced")
    message: str
    project_id: str
    database_name: str
    coalesced: bool = Field(
        default=False, description="True when the repository already had an active job and that job is returned"
    )


class CancelResult(BaseModel):
    job_id: str
    status: IndexingJobStatus
    message: str


class JobList(BaseModel):
    project_id: str
    jobs: list[IndexingJobProgress]


class WorkingDirectoryResult(BaseModel):
    directory: str
    project_id: str
    source: Literal["explicit", "config", "default"]
    config_path: str | None = None


class DatabaseHealth(BaseModel):
    mode: Literal["embedded", "external"]
    server_version: str
    pgvector_version: str | None
    registry_database: str
    projects: int


class HealthReport(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    database: DatabaseHealth
    embedder: str
    embedding_dimension: int
    worker_id: str | None = Field(description="None when this server runs no workers")
    running_jobs: int


class IndexSummary(BaseModel):
    project_id: str
    repository_id: str
    files_scanned: int
    files_indexed: int
    files_unchanged: int
    files_deleted: int
    files_skipped: dict[str, int]
    chunks_created: int
    chunks_embedded: int
    total_files: int
    total_chunks: int
    searchable_seconds: float
    duration_seconds: float
