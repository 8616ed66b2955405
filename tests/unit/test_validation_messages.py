"""Pydantic validation errors become one short line per field (server/validation.py)."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import Field, ValidationError, validate_call

from server.jobs.models import IndexingJobCreate, IndexingJobStatus
from server.mcp.params import Text
from server.validation import MAX_LINES, describe_validation_error, shown_value


@validate_call
def tool(
    query: Text,
    limit: Annotated[int, Field(ge=1, le=50)] = 10,
    floor: Annotated[int, Field(ge=0)] = 0,
    status: IndexingJobStatus | None = None,
    flag: bool = False,
    name: Annotated[str, Field(min_length=1, max_length=5)] = "x",
) -> None:
    pass


SCHEMA: dict[str, Any] = {
    "properties": {
        "query": {"type": "string"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 50},
        "floor": {"type": "integer", "minimum": 0},
        "status": {"anyOf": [{"$ref": "#/$defs/Status"}, {"type": "null"}]},
        "flag": {"type": "boolean"},
        "name": {"type": "string"},
    },
    "$defs": {"Status": {"enum": [s.value for s in IndexingJobStatus], "type": "string"}},
}


def message(schema: dict[str, Any] | None = SCHEMA, **args: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        tool(**args)
    text = describe_validation_error(caught.value, schema)
    assert "errors.pydantic.dev" not in text and "validation error" not in text
    return text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"query": "x", "limit": 500}, "limit: must be between 1 and 50 (got 500)"),
        ({"query": "x", "limit": 0}, "limit: must be between 1 and 50 (got 0)"),
        ({"query": "x", "limit": "abc"}, "limit: must be an integer (got 'abc')"),
        ({"query": "x", "limit": 1.5}, "limit: must be a whole number (got 1.5)"),
        ({"query": "x", "floor": -3}, "floor: must be at least 0 (got -3)"),
        ({"query": 5}, "query: must be a string (got 5)"),
        ({}, "query: required"),
        ({"query": "a\x00b"}, "query: must not contain NUL characters (got 'a\\x00b')"),
        ({"query": "\ud800"}, "query: must be valid Unicode text (it contains a lone surrogate) (got '\\ud800')"),
        ({"query": "x", "flag": "maybe"}, "flag: must be true or false (got 'maybe')"),
        ({"query": "x", "name": ""}, "name: must not be empty"),
        ({"query": "x", "name": "toolong"}, "name: must be at most 5 characters (got 7)"),
        (
            {"query": "x", "status": "paused"},
            "status: must be one of: pending, running, completed, failed, cancelled (got 'paused')",
        ),
        (
            {"query": "x", "bogus": 1},
            "bogus: unknown parameter; this tool takes: flag, floor, limit, name, query, status",
        ),
    ],
)
def test_one_clear_line_per_field(args: dict[str, Any], expected: str) -> None:
    assert message(**args) == expected


def test_without_a_schema_a_single_bound_is_named() -> None:
    assert message(None, query="x", limit=500) == "limit: must be at most 50 (got 500)"
    assert message(None, query="x", status="paused").startswith("status: must be one of: 'pending'")


def test_odd_unknown_parameter_names_are_quoted() -> None:
    assert message(SCHEMA, query="x", **{"limit limit": 1}).startswith(
        "'limit limit': unknown parameter; this tool takes:"
    )
    assert message(SCHEMA, query="x", **{"": 1}).startswith("'': unknown parameter")


def test_several_fields_give_several_lines() -> None:
    assert message(query=1, limit=0).split("\n") == ["query: must be a string (got 1)",
                                                     "limit: must be between 1 and 50 (got 0)"]  # fmt: skip


def test_huge_input_is_shown_shortened() -> None:
    text = message(query="x", flag="y" * 10_000)
    assert text == "flag: must be true or false (got 'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy...)"
    assert shown_value("y" * 1000).endswith("...") and len(shown_value("y" * 1000)) == 40


def test_our_models_errors_read_the_same_way(tmp_path: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        IndexingJobCreate(repo_path=str(tmp_path), repo_name="", project_id=" ", extra=1)  # type: ignore[call-arg]
    lines = describe_validation_error(caught.value).split("\n")
    assert lines == ["repo_name: must not be empty", "project_id: must not be blank (got ' ')",
                     "extra: unknown parameter"]  # fmt: skip


def test_many_errors_are_capped() -> None:
    @validate_call
    def wide(**kwargs: int) -> None:
        pass

    with pytest.raises(ValidationError) as caught:
        wide(**{f"a{i}": "x" for i in range(15)})  # type: ignore[arg-type]
    lines = describe_validation_error(caught.value).split("\n")
    assert len(lines) == MAX_LINES + 1 and lines[-1] == "... and 5 more invalid fields"
