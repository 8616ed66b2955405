"""The job vocabulary: the status enum, a typed `indexing_jobs` row, the request and the progress view."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol, Self, overload
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from server.jobs.errors import InvalidJobIdError
from server.jobs.paths import validate_repo_path

__all__ = [
    "ACTIVE_STATUSES",
    "ALLOWED_ROOTS_CONTEXT_KEY",
    "TERMINAL_STATUSES",
    "IndexingJobCreate",
    "IndexingJobProgress",
    "IndexingJobStatus",
    "JobRow",
    "RecordLike",
    "parse_job_id",
]

ALLOWED_ROOTS_CONTEXT_KEY = "allowed_roots"
SHOWN_PATHS = 50  # a refresh's paths listed in its progress view
JobKind = Literal["index", "refresh"]


class IndexingJobStatus(StrEnum):
    """Lifecycle state of an indexing job; values match the ``indexing_jobs.status`` CHECK constraint."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True once the job can no longer change state."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES: frozenset[IndexingJobStatus] = frozenset(
    {IndexingJobStatus.COMPLETED, IndexingJobStatus.FAILED, IndexingJobStatus.CANCELLED}
)
ACTIVE_STATUSES: frozenset[IndexingJobStatus] = frozenset({IndexingJobStatus.PENDING, IndexingJobStatus.RUNNING})


@dataclass(frozen=True, slots=True)
class JobRow:
    """One `indexing_jobs` row, every column typed (what `server.jobs.queries` returns)."""

    id: UUID
    repository_id: UUID | None
    repo_path: str
    repo_name: str
    project_id: str
    force_reindex: bool
    status: IndexingJobStatus
    progress_percentage: int
    progress_message: str | None
    files_scanned: int
    files_indexed: int
    chunks_created: int
    error_message: str | None
    error_type: str | None
    error_traceback: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    metadata: Mapping[str, Any]
    kind: JobKind  # index: the whole repository; refresh: metadata.paths, or every file when metadata.full
    worker_task_id: str | None  # name of the asyncio task running the job
    connection_id: str | None  # pg_backend_pid() of the worker connection that claimed the job
    worker_id: str | None  # host:pid:nonce of the worker process
    heartbeat_at: datetime | None
    attempts: int
    updated_at: datetime
    version: int

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def phase(self) -> str | None:
        phase = self.metadata.get("phase")
        return phase if isinstance(phase, str) else None

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | RecordLike) -> JobRow:
        """From a row selected with :data:`JOB_COLUMNS` (``metadata`` may be jsonb text)."""
        values = {name: record[name] for name in JOB_COLUMNS}
        values["status"] = IndexingJobStatus(values["status"])
        values["metadata"] = _metadata(values["metadata"])
        return cls(**values)


JOB_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(JobRow))


def parse_job_id(job_id: str) -> UUID:
    """The UUID a client passed as a job id, or :class:`InvalidJobIdError` saying what is expected."""
    try:
        return UUID(job_id.strip())
    except (ValueError, AttributeError) as exc:
        shown = job_id if len(job_id) <= 60 else job_id[:57] + "..."
        raise InvalidJobIdError(
            f"invalid job_id {shown!r}: expected a UUID like 3f2b8c1e-5d6a-4f7b-9c0d-1e2f3a4b5c6d, "
            "as returned by start_indexing_background"
        ) from exc


class RecordLike(Protocol):
    """Anything indexable by column name: a dict or an ``asyncpg.Record``."""

    def __getitem__(self, key: str, /) -> Any: ...


class IndexingJobCreate(BaseModel):
    """Request to index one local repository in the background.

    ``repo_path`` is checked by :func:`server.jobs.paths.validate_repo_path` and stored resolved.
    To restrict it to configured roots use :meth:`validate_with_roots` (or pass the validation
    context ``{"allowed_roots": [...]}`` to ``model_validate``).
    """

    model_config = ConfigDict(extra="forbid")

    repo_path: str = Field(
        min_length=1,
        description="Absolute path of an existing, readable repository directory on the server's machine; "
        "stored resolved (symlinks followed).",
        examples=["/home/alice/projects/app"],
    )
    repo_name: str = Field(min_length=1, max_length=255, description="Human-readable repository name, e.g. 'app'.")
    project_id: str = Field(
        min_length=1, max_length=255, description="Project (workspace) the repository is indexed into."
    )
    force_reindex: bool = Field(
        default=False, description="Re-index every file even if it is unchanged since the last run."
    )

    @field_validator("repo_path")
    @classmethod
    def _validate_repo_path(cls, value: str, info: ValidationInfo) -> str:
        return str(validate_repo_path(value, allowed_roots=_allowed_roots(info.context)))

    @field_validator("repo_name", "project_id")
    @classmethod
    def _reject_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @classmethod
    def validate_with_roots(cls, data: Mapping[str, Any], allowed_roots: Sequence[Path | str]) -> Self:
        """Validate ``data`` with ``repo_path`` required to resolve inside one of ``allowed_roots``."""
        return cls.model_validate(dict(data), context={ALLOWED_ROOTS_CONTEXT_KEY: tuple(allowed_roots)})


def _allowed_roots(context: Any) -> tuple[Path | str, ...]:
    if not isinstance(context, Mapping):
        return ()
    roots = context.get(ALLOWED_ROOTS_CONTEXT_KEY) or ()
    if isinstance(roots, str | Path):  # a lone root, not a sequence of characters
        return (roots,)
    return tuple(roots)


def _without_property_titles(schema: dict[str, Any]) -> None:
    """Property titles only repeat the names; every client parses and validates the schema on
    each `get_indexing_status` call, so a smaller schema is a faster call."""
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)


class IndexingJobProgress(BaseModel):
    """Snapshot of a background indexing job: state, progress counters, errors and timestamps."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_without_property_titles)

    job_id: UUID = Field(description="Identifier of the job.")
    status: IndexingJobStatus = Field(description="Lifecycle state of the job.")
    progress_percentage: int = Field(default=0, ge=0, le=100, description="Overall progress, 0-100.")
    progress_message: str = Field(default="", description="Human-readable description of the current step.")
    files_scanned: int = Field(default=0, ge=0, description="Files found by the scanner so far.")
    files_indexed: int = Field(default=0, ge=0, description="Files chunked and stored so far.")
    chunks_created: int = Field(default=0, ge=0, description="Chunks stored so far.")
    error_message: str | None = Field(default=None, description="Why the job failed, when it failed.")
    error_type: str | None = Field(default=None, description="Exception class name of the failure.")
    error_traceback: str | None = Field(
        default=None, description="Traceback of the failure; shown only when the server runs with DEBUG=true."
    )
    created_at: datetime = Field(description="When the job was submitted.")
    started_at: datetime | None = Field(default=None, description="When a worker began the job.")
    completed_at: datetime | None = Field(default=None, description="When the job finished (completed or failed).")
    cancelled_at: datetime | None = Field(default=None, description="When cancellation was requested.")
    repository_id: UUID | None = Field(default=None, description="Repository the job indexes into, once it is known.")
    repo_path: str = Field(description="Resolved absolute path of the repository directory.")
    repo_name: str = Field(description="Human-readable repository name.")
    project_id: str = Field(description="Project (workspace) the repository is indexed into.")
    force_reindex: bool = Field(default=False, description="Whether unchanged files are re-indexed too.")
    kind: JobKind = Field(
        default="index",
        description="index: the whole repository (incremental unless forced); refresh: the changed files a "
        "watcher saw, or every file for refresh_index (seconds, with its own worker slots).",
    )
    paths: list[str] | None = Field(
        default=None,
        description=f"A refresh's changed paths, relative to the repository (at most {SHOWN_PATHS} listed); "
        "None for index jobs and for refreshes of every file.",
    )
    paths_total: int = Field(default=0, ge=0, description="How many paths the refresh covers (0: not a list).")
    phase: str | None = Field(
        default=None,
        description=(
            "Current phase: 'scanning', 'storing', 'vector_index' (the static vector index is being built "
            "after a bulk load; search works meanwhile), 'embedding', 'finalizing' or 'done'."
        ),
    )
    origin: str = Field(
        default="worker",
        description="Who runs the job: 'worker' (queued, run by any worker process), 'cli' (`codebase-mcp index`, "
        "in its own process) or 'tool' (the index_repository tool, within the call).",
    )
    static_coverage: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share of the repository's chunks with a static-tier vector."
    )
    transformer_coverage: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share of the repository's chunks with a transformer vector."
    )
    eta_seconds: float | None = Field(default=None, ge=0.0, description="Expected seconds left, while running.")
    files_to_index: int = Field(default=0, ge=0, description="Files this job reads (new or changed).")
    chunks_embedded: int = Field(default=0, ge=0, description="Transformer vectors computed by this job.")
    total_chunks: int = Field(default=0, ge=0, description="Chunks the repository holds.")
    searchable_at: datetime | None = Field(
        default=None, description="When full text (and static vectors) were stored: search works from here."
    )
    semantic_at: datetime | None = Field(default=None, description="When every chunk had a vector (static tier).")
    worker_id: str | None = Field(default=None, description="Identifier of the worker running the job.")
    heartbeat_at: datetime | None = Field(default=None, description="Last sign of life from the worker.")
    updated_at: datetime | None = Field(default=None, description="When the job row last changed.")
    version: int = Field(default=0, ge=0, description="Row version, incremented on every update.")

    @property
    def is_terminal(self) -> bool:
        """True once the job is completed, failed or cancelled."""
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_row(cls, row: JobRow, *, include_traceback: bool = True) -> Self:
        """The client's view of a job; without `include_traceback` (the DEBUG setting) no traceback."""
        values = {name: getattr(row, name) for name in JOB_COLUMNS}  # no deep copy (dataclasses.asdict)
        if not include_traceback:
            values["error_traceback"] = None
        return cls.from_record(values)

    @classmethod
    def from_record(cls, row: Mapping[str, Any] | RecordLike) -> Self:
        """Build from an ``indexing_jobs`` row: ``id`` becomes ``job_id``, ``metadata`` may hold ``phase``."""
        meta = _metadata(row["metadata"])
        phase = meta.get("phase")
        kind = row["kind"]
        listed = meta.get("paths") if kind == "refresh" and not meta.get("full") else None
        paths = [str(p) for p in listed] if isinstance(listed, list) else None
        return cls(
            job_id=row["id"],
            status=row["status"],
            progress_percentage=row["progress_percentage"],
            progress_message=row["progress_message"] or "",
            files_scanned=row["files_scanned"],
            files_indexed=row["files_indexed"],
            chunks_created=row["chunks_created"],
            error_message=row["error_message"],
            error_type=row["error_type"],
            error_traceback=row["error_traceback"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            completed_at=row["completed_at"],
            cancelled_at=row["cancelled_at"],
            repository_id=row["repository_id"],
            repo_path=row["repo_path"],
            repo_name=row["repo_name"],
            project_id=row["project_id"],
            force_reindex=row["force_reindex"],
            kind=kind,
            paths=paths[:SHOWN_PATHS] if paths is not None else None,
            paths_total=len(paths) if paths is not None else 0,
            phase=phase if isinstance(phase, str) else None,
            origin=origin if isinstance(origin := meta.get("origin"), str) else "worker",
            static_coverage=_number(meta, "static_coverage", 0.0),
            transformer_coverage=_number(meta, "transformer_coverage", 0.0),
            eta_seconds=_number(meta, "eta_seconds", None),
            files_to_index=int(_number(meta, "files_to_index", 0)),
            chunks_embedded=int(_number(meta, "chunks_embedded", 0)),
            total_chunks=int(_number(meta, "total_chunks", 0)),
            searchable_at=_timestamp(meta, "searchable_at"),
            semantic_at=_timestamp(meta, "semantic_at"),
            worker_id=row["worker_id"],
            heartbeat_at=row["heartbeat_at"],
            updated_at=row["updated_at"],
            version=row["version"],
        )


@overload
def _number(meta: Mapping[str, Any], key: str, default: float) -> float: ...
@overload
def _number(meta: Mapping[str, Any], key: str, default: None) -> float | None: ...
def _number(meta: Mapping[str, Any], key: str, default: float | None) -> float | None:
    value = meta.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _timestamp(meta: Mapping[str, Any], key: str) -> datetime | None:
    """Epoch seconds in the metadata (written by the worker) as an aware datetime."""
    value = meta.get(key)
    return datetime.fromtimestamp(value, tz=UTC) if isinstance(value, int | float) else None


def _metadata(value: Any) -> Mapping[str, Any]:
    """The job's ``metadata`` column: asyncpg returns jsonb as text unless a codec is registered."""
    if isinstance(value, str | bytes):
        value = json.loads(value)
    return value if isinstance(value, Mapping) else {}
