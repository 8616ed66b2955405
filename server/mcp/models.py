"""Typed tool outputs (they become MCP output schemas)."""

from __future__ import annotations

from datetime import datetime
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
    job_id: str = Field(description="The job recording this run (origin 'tool'), as the jobs page shows it")
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
    notice: str | None = Field(default=None, description="Set when the run found nothing to index, and why")


class RepositoryInfo(BaseModel):
    repository_id: str
    name: str
    root_path: str = Field(description="Absolute root directory; search results' file_path is relative to it")
    files: int = Field(description="Files indexed at the end of the last completed run")
    chunks: int = Field(description="Chunks stored at the end of the last completed run")
    unembedded_chunks: int = Field(description="Chunks without a transformer vector yet (searchable by text only)")
    created_at: datetime
    last_indexed_at: datetime | None = Field(description="When the last run finished; None if none finished yet")
    active_job_id: str | None = Field(description="The pending or running job for this repository, if any")
    active_job_status: IndexingJobStatus | None


class RepositoryList(BaseModel):
    project_id: str
    repositories: list[RepositoryInfo]


class RemovedRepository(BaseModel):
    project_id: str
    repository_id: str
    name: str
    root_path: str
    files_removed: int
    chunks_removed: int = Field(description="Chunks deleted with their vectors and full text")
    message: str
