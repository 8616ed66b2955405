"""Background-job models: status enum, IndexingJobCreate validation, IndexingJobProgress."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from pydantic import ValidationError

from server.jobs.models import (
    ACTIVE_STATUSES,
    JOB_COLUMNS,
    TERMINAL_STATUSES,
    IndexingJobCreate,
    IndexingJobProgress,
    IndexingJobStatus,
    JobRow,
)

# --- IndexingJobStatus ----------------------------------------------------------------------------


def test_status_values_match_the_database_check_constraint() -> None:
    assert {status.value for status in IndexingJobStatus} == {
        "pending",
        "running",
        "completed",
        "failed",
        "cancelled",
    }


def test_terminal_and_active_statuses_partition_the_enum() -> None:
    assert TERMINAL_STATUSES.isdisjoint(ACTIVE_STATUSES)
    assert set(IndexingJobStatus) == TERMINAL_STATUSES | ACTIVE_STATUSES
    assert {IndexingJobStatus("pending"), IndexingJobStatus("running")} == ACTIVE_STATUSES


@pytest.mark.parametrize(
    ("status", "terminal"),
    [("pending", False), ("running", False), ("completed", True), ("failed", True), ("cancelled", True)],
)
def test_status_knows_whether_it_is_terminal(status: str, terminal: bool) -> None:
    assert IndexingJobStatus(status).is_terminal is terminal


def test_status_compares_equal_to_its_string() -> None:
    assert str(IndexingJobStatus.RUNNING) == "running"
    assert isinstance(IndexingJobStatus.RUNNING, str)
    assert f"{IndexingJobStatus.FAILED}" == "failed"


# --- IndexingJobCreate ----------------------------------------------------------------------------


def _create(repo_path: str, **overrides: Any) -> IndexingJobCreate:
    fields: dict[str, Any] = {"repo_path": repo_path, "repo_name": "test-repo", "project_id": "test-project"}
    return IndexingJobCreate.model_validate(fields | overrides)


def test_valid_absolute_path_is_accepted_and_stored_resolved(tmp_path: Path) -> None:
    job = _create(f"{tmp_path}/./")
    assert job.repo_path == str(tmp_path.resolve())
    assert job.repo_name == "test-repo"
    assert job.project_id == "test-project"


def test_force_reindex_defaults_to_false(tmp_path: Path) -> None:
    assert _create(str(tmp_path)).force_reindex is False
    assert _create(str(tmp_path), force_reindex=True).force_reindex is True


def test_relative_path_is_rejected() -> None:
    with pytest.raises(ValueError, match="must be absolute"):
        _create("./relative/path")


@pytest.mark.parametrize(
    "malicious_path",
    [
        "/var/data/../../etc/passwd",
        "/tmp/../../../etc/passwd",
        "/home/user/../../../etc/shadow",
        "./../../sensitive",
        "relative/../../../etc/hosts",
        "/var/data/%2e%2e/%2e%2e/etc/passwd",
        "/var/data/%252e%252e%252fetc",
        "C:\\..\\Windows",
    ],
)
def test_path_traversal_patterns_are_rejected(malicious_path: str) -> None:
    with pytest.raises(ValueError, match="Path traversal detected"):
        _create(malicious_path)


@pytest.mark.parametrize(
    ("repo_path", "message"),
    [
        ("   ", "repo_path must not be empty"),
        ("/tmp/x\x00", "contains a NUL byte"),
        ("C:/Users/alice", "Windows-style paths are not supported"),
        ("//server/share", "Windows-style paths are not supported"),
    ],
)
def test_repo_path_rejections_carry_the_validator_message(repo_path: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        _create(repo_path)
    assert caught.value.errors()[0]["loc"] == ("repo_path",)


def test_empty_repo_path_is_rejected_on_the_field() -> None:
    with pytest.raises(ValidationError, match="at least 1 character") as caught:
        _create("")
    assert caught.value.errors()[0]["loc"] == ("repo_path",)


def test_missing_and_file_paths_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="does not exist"):
        _create(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="is not a directory"):
        _create(str(tmp_path / "file"))


@pytest.mark.parametrize("field", ["repo_name", "project_id"])
@pytest.mark.parametrize(("value", "message"), [("", "at least 1 character"), ("  ", "must not be blank")])
def test_empty_or_blank_names_are_rejected(tmp_path: Path, field: str, value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        _create(str(tmp_path), **{field: value})
    assert caught.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize("field", ["repo_name", "project_id"])
def test_names_longer_than_255_characters_are_rejected(tmp_path: Path, field: str) -> None:
    assert getattr(_create(str(tmp_path), **{field: "x" * 255}), field) == "x" * 255
    with pytest.raises(ValidationError, match="at most 255 characters"):
        _create(str(tmp_path), **{field: "x" * 256})


@pytest.mark.parametrize("field", ["repo_path", "repo_name", "project_id"])
def test_required_fields_are_required(tmp_path: Path, field: str) -> None:
    fields = {"repo_path": str(tmp_path), "repo_name": "r", "project_id": "p"}
    del fields[field]
    with pytest.raises(ValidationError, match="Field required"):
        IndexingJobCreate.model_validate(fields)


def test_unknown_fields_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        _create(str(tmp_path), priority="high")


def test_validate_with_roots_accepts_a_path_inside_a_root(tmp_path: Path) -> None:
    repo = tmp_path / "root" / "app"
    repo.mkdir(parents=True)
    data = {"repo_path": str(repo), "repo_name": "app", "project_id": "p"}
    job = IndexingJobCreate.validate_with_roots(data, [tmp_path / "root"])
    assert job.repo_path == str(repo.resolve())


def test_validate_with_roots_rejects_a_path_outside_the_roots(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    data = {"repo_path": str(tmp_path), "repo_name": "app", "project_id": "p"}
    with pytest.raises(ValidationError, match="outside the allowed roots"):
        IndexingJobCreate.validate_with_roots(data, [tmp_path / "root"])
    assert IndexingJobCreate.model_validate(data).repo_path == str(tmp_path.resolve())  # no roots: fine


def test_allowed_roots_may_come_from_the_validation_context(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    data = {"repo_path": str(tmp_path), "repo_name": "app", "project_id": "p"}
    for roots in ([str(tmp_path / "root")], str(tmp_path / "root")):
        with pytest.raises(ValidationError, match="outside the allowed roots"):
            IndexingJobCreate.model_validate(data, context={"allowed_roots": roots})


def test_symlink_inside_an_allowed_root_is_stored_as_its_target(tmp_path: Path) -> None:
    root = tmp_path / "root"
    real = root / "releases" / "v2"
    real.mkdir(parents=True)
    (root / "app").symlink_to(real)
    data = {"repo_path": str(root / "app"), "repo_name": "app", "project_id": "p"}
    assert IndexingJobCreate.validate_with_roots(data, [root]).repo_path == str(real.resolve())


def test_symlink_escaping_the_allowed_root_is_rejected(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret").mkdir()
    (root / "app").symlink_to(tmp_path / "secret")
    data = {"repo_path": str(root / "app"), "repo_name": "app", "project_id": "p"}
    with pytest.raises(ValidationError, match=r"symlink .* escapes the allowed roots"):
        IndexingJobCreate.validate_with_roots(data, [root])


# --- IndexingJobProgress --------------------------------------------------------------------------

CREATED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def _row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": uuid4(),
        "status": "running",
        "progress_percentage": 42,
        "progress_message": "Embedding chunks",
        "files_scanned": 120,
        "files_indexed": 80,
        "chunks_created": 900,
        "error_message": None,
        "error_type": None,
        "error_traceback": None,
        "created_at": CREATED,
        "started_at": CREATED + timedelta(seconds=1),
        "completed_at": None,
        "cancelled_at": None,
        "repository_id": uuid4(),
        "repo_path": "/srv/repos/app",
        "repo_name": "app",
        "project_id": "default",
        "force_reindex": True,
        "kind": "index",
        "metadata": {"phase": "embedding", "other": 1},
        "worker_id": "worker-1",
        "heartbeat_at": CREATED + timedelta(seconds=30),
        "updated_at": CREATED + timedelta(seconds=31),
        "version": 7,
    }
    return row | overrides


def test_from_record_maps_every_column() -> None:
    row = _row()
    progress = IndexingJobProgress.from_record(row)
    assert progress.job_id == row["id"]
    assert progress.status is IndexingJobStatus.RUNNING
    assert progress.phase == "embedding"
    expected = {key: value for key, value in row.items() if key not in {"id", "metadata", "status"}}
    assert progress.model_dump(include=set(expected)) == expected


def test_from_record_round_trips_through_a_dump() -> None:
    progress = IndexingJobProgress.from_record(_row())
    assert IndexingJobProgress.model_validate(progress.model_dump()) == progress
    assert IndexingJobProgress.model_validate_json(progress.model_dump_json()) == progress


@pytest.mark.parametrize(
    ("metadata", "phase"),
    [
        ({"phase": "scanning"}, "scanning"),
        (json.dumps({"phase": "finalizing"}), "finalizing"),
        ({}, None),
        (None, None),
        ({"phase": 3}, None),
    ],
)
def test_phase_comes_from_metadata(metadata: object, phase: str | None) -> None:
    assert IndexingJobProgress.from_record(_row(metadata=metadata)).phase == phase


def test_null_progress_message_becomes_empty_string() -> None:
    assert IndexingJobProgress.from_record(_row(progress_message=None)).progress_message == ""


def test_from_record_accepts_uuid_strings_and_failure_details() -> None:
    job_id = "6f1c0a8e-2d4b-4c1e-9a3f-0b5d7e9f1a2c"
    progress = IndexingJobProgress.from_record(
        _row(id=job_id, status="failed", error_message="boom", error_type="OSError", repository_id=None)
    )
    assert progress.job_id == UUID(job_id)
    assert (progress.error_message, progress.error_type, progress.repository_id) == ("boom", "OSError", None)
    assert progress.is_terminal


def test_from_record_requires_every_column() -> None:
    row = _row()
    del row["version"]
    with pytest.raises(KeyError, match="version"):
        IndexingJobProgress.from_record(row)


def test_progress_is_frozen() -> None:
    progress = IndexingJobProgress.from_record(_row())
    with pytest.raises(ValidationError, match="frozen"):
        progress.progress_percentage = 50  # type: ignore[misc]
    assert progress.progress_percentage == 42


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("progress_percentage", 101),
        ("progress_percentage", -1),
        ("files_scanned", -1),
        ("files_indexed", -1),
        ("chunks_created", -1),
        ("version", -1),
        ("status", "paused"),
    ],
)
def test_out_of_range_values_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        IndexingJobProgress.from_record(_row(**{field: value}))
    assert caught.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize("percentage", [0, 100])
def test_progress_bounds_are_inclusive(percentage: int) -> None:
    assert IndexingJobProgress.from_record(_row(progress_percentage=percentage)).progress_percentage == percentage


@pytest.mark.parametrize("status", list(IndexingJobStatus))
def test_is_terminal_follows_status(status: IndexingJobStatus) -> None:
    assert IndexingJobProgress.from_record(_row(status=status.value)).is_terminal is (status in TERMINAL_STATUSES)


@pytest.mark.parametrize("model", [IndexingJobCreate, IndexingJobProgress])
def test_every_field_is_described_for_the_mcp_schema(
    model: type[IndexingJobCreate | IndexingJobProgress],
) -> None:
    schema = model.model_json_schema()
    assert schema["description"]
    undescribed = [name for name, prop in schema["properties"].items() if not prop.get("description")]
    assert undescribed == []


# --- JobRow -----------------------------------------------------------------------------------------


def _record(**overrides: Any) -> dict[str, Any]:
    extra = {"worker_task_id": "job-3", "connection_id": "4242", "attempts": 1}
    return _row(**extra) | overrides


def test_job_row_types_every_column() -> None:
    row = JobRow.from_record(_record(metadata=json.dumps({"phase": "chunking"}), status="failed"))
    assert row.status is IndexingJobStatus.FAILED and row.is_terminal
    assert row.metadata == {"phase": "chunking"} and row.phase == "chunking"
    assert (row.worker_task_id, row.connection_id, row.attempts) == ("job-3", "4242", 1)
    assert set(JOB_COLUMNS) == set(_record())  # one field per column, no more


def test_job_row_requires_every_column() -> None:
    record = _record()
    del record["connection_id"]
    with pytest.raises(KeyError, match="connection_id"):
        JobRow.from_record(record)


def test_job_row_rejects_an_unknown_status() -> None:
    with pytest.raises(ValueError, match="paused"):
        JobRow.from_record(_record(status="paused"))


def test_progress_view_hides_the_traceback_unless_asked() -> None:
    row = JobRow.from_record(_record(status="failed", error_type="OSError", error_message="boom",
                                     error_traceback="Traceback ..."))  # fmt: skip
    shown = IndexingJobProgress.from_row(row)
    hidden = IndexingJobProgress.from_row(row, include_traceback=False)
    assert shown.error_traceback == "Traceback ..." and hidden.error_traceback is None
    assert (hidden.error_type, hidden.error_message, hidden.job_id) == ("OSError", "boom", row.id)
    assert shown.model_dump(exclude={"error_traceback"}) == hidden.model_dump(exclude={"error_traceback"})


def test_a_refresh_shows_its_paths_and_a_refresh_of_every_file_none() -> None:
    paths = [f"src/f{i:02d}.py" for i in range(60)]
    view = IndexingJobProgress.from_record(_row(kind="refresh", metadata={"paths": paths, "full": False}))
    assert (view.kind, view.paths, view.paths_total) == ("refresh", paths[:50], 60)
    full = IndexingJobProgress.from_record(_row(kind="refresh", metadata={"paths": [], "full": True}))
    assert (full.paths, full.paths_total) == (None, 0)
    index = IndexingJobProgress.from_record(_row(metadata={"paths": ["x.py"]}))
    assert (index.kind, index.paths) == ("index", None)
