"""One UserError family; the error boundary's classification of every exception."""

from __future__ import annotations

import logging
import re

import pytest
from fastmcp.exceptions import ToolError
from pydantic import BaseModel, ValidationError

from server.app import App, AppNotStartedError
from server.db.embedded import EmbeddedPostgresError
from server.db.names import InvalidNameError, validate_project_id
from server.db.registry import EmbedderMismatchError, UnknownProjectError
from server.embeddings import EmbeddingError
from server.errors import InvalidArgumentError, UserError
from server.indexer.pipeline import RepositoryTooLargeError
from server.jobs.errors import InvalidJobIdError, JobNotCancellableError, JobNotFoundError
from server.jobs.models import parse_job_id
from server.jobs.paths import RepoPathError
from server.mcp.middleware import classify
from server.projects import ProjectConfigError
from server.search.request import SearchError
from server.settings import Settings


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (SearchError, ValueError), (UnknownProjectError, LookupError), (InvalidNameError, ValueError),
        (ProjectConfigError, ValueError), (RepoPathError, ValueError), (EmbedderMismatchError, RuntimeError),
        (RepositoryTooLargeError, ValueError), (EmbeddingError, Exception), (EmbeddedPostgresError, RuntimeError),
        (InvalidJobIdError, ValueError), (JobNotFoundError, LookupError), (JobNotCancellableError, Exception),
        (InvalidArgumentError, ValueError),
    ],
)  # fmt: skip
def test_every_expected_failure_is_a_user_error(error: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(error, UserError) and issubclass(error, builtin)


def test_parse_job_id() -> None:
    job_id = "6f1c0a8e-2d4b-4c1e-9a3f-0b5d7e9f1a2c"
    assert str(parse_job_id(f"  {job_id}\n")) == job_id
    with pytest.raises(InvalidJobIdError, match="invalid job_id 'nope': expected a UUID"):
        parse_job_id("nope")
    with pytest.raises(InvalidJobIdError, match=r"\.\.\.'"):
        parse_job_id("z" * 500)  # quoted shortened


def _raised(exc: BaseException) -> BaseException:
    """`exc` raised and caught, so it carries a traceback like a real failure."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_user_errors_keep_their_message_through_fastmcp_wrappers() -> None:
    try:
        try:
            validate_project_id("bad id!")
        except InvalidNameError as exc:
            raise ToolError("Error calling tool 'x'") from exc  # what FastMCP masks it into
    except ToolError as wrapped:
        failure = classify(wrapped, where="tool 'x'")
    assert failure.kind == "user" and failure.message.startswith("invalid project id 'bad id!'")


def test_validation_errors_become_lines() -> None:
    class Model(BaseModel):
        limit: int

    with pytest.raises(ValidationError) as caught:
        Model(limit="many")
    wrapped = ToolError("Error calling tool 'x'")
    wrapped.__cause__ = caught.value
    failure = classify(wrapped, where="tool 'x'")
    assert (failure.kind, failure.message) == ("validation", "limit: must be an integer (got 'many')")


def test_a_deliberate_tool_error_keeps_its_message() -> None:
    assert classify(ToolError("try again later"), where="tool 'x'").message == "try again later"


def test_other_errors_are_logged_with_a_reference(caplog: pytest.LogCaptureFixture) -> None:
    wrapped = ToolError("Error calling tool 'x'")
    wrapped.__cause__ = _raised(KeyError("secret-detail"))
    with caplog.at_level(logging.ERROR, logger="server.mcp.middleware"):
        failure = classify(wrapped, where="tool 'x'")
    found = re.fullmatch(r"internal error \(ref ([0-9a-f]{8})\); the server log has the details", failure.message)
    assert failure.kind == "internal" and found is not None and "secret-detail" not in failure.message
    [record] = caplog.records
    assert record.levelno == logging.ERROR and found.group(1) in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is KeyError and record.exc_info[2] is not None
    debug = classify(_raised(KeyError("secret-detail")), where="tool 'x'", debug=True)
    assert debug.kind == "internal" and "KeyError: 'secret-detail'" in debug.message


def test_single_member_exception_groups_are_unwrapped() -> None:
    group = ExceptionGroup("task group", [SearchError("query is empty")])
    assert classify(group, where="tool 'x'").message == "query is empty"


def test_app_parts_before_start_raise_a_clear_error() -> None:
    app = App(Settings(_env_file=None), embedder=object())  # type: ignore[arg-type]
    for part in ("cluster", "registry", "resolver"):
        with pytest.raises(AppNotStartedError, match=rf"App\.{part} is not available before App\.start\(\)"):
            getattr(app, part)
