"""Pydantic validation errors as one short, actionable line per field (MCP tools, CLI settings).

`limit: must be between 1 and 50 (got 500)` instead of pydantic's multi-line text with its
documentation URLs. The tool's input schema (when given) supplies both bounds of a range and
the accepted values of an enum, which pydantic's error for one violated bound does not carry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

__all__ = ["describe_validation_error", "error_line", "shown_value"]

MAX_SHOWN_CHARS = 40
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")
MAX_LINES = 10

_TYPE_PHRASES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "uuid_type": "must be a UUID",
    "uuid_parsing": "must be a UUID",
    "dict_type": "must be an object",
    "list_type": "must be a list",
    "none_required": "must be null",
    "finite_number": "must be a finite number",
}


def shown_value(value: Any) -> str:
    """`value` as the client sent it, cut to a readable length (control characters escaped)."""
    text = repr(value)
    if len(text) > MAX_SHOWN_CHARS:
        text = text[: MAX_SHOWN_CHARS - 3] + "..."
    return text


def _resolve(schema: Mapping[str, Any], node: Any) -> Mapping[str, Any]:
    """`node`, or the `#/$defs/...` definition it refers to."""
    if not isinstance(node, Mapping):
        return {}
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = schema.get("$defs", {}).get(ref.removeprefix("#/$defs/"))
        return {**target, **node} if isinstance(target, Mapping) else node
    return node


def _property(schema: Mapping[str, Any] | None, field: str) -> Mapping[str, Any]:
    """The schema of `field` merged with its `anyOf` members (how optional parameters are described)."""
    if not schema:
        return {}
    prop = _resolve(schema, schema.get("properties", {}).get(field))
    merged: dict[str, Any] = {}
    for member in prop.get("anyOf", []):
        merged.update(_resolve(schema, member))
    merged.update(prop)
    return merged


def _range(prop: Mapping[str, Any], ctx: Mapping[str, Any], kind: str) -> str:
    low, high = prop.get("minimum"), prop.get("maximum")
    if low is not None and high is not None:
        return f"must be between {low} and {high}"
    bound = next(iter(ctx.values()), None) if ctx else None
    words = {
        "greater_than_equal": "at least",
        "less_than_equal": "at most",
        "greater_than": "greater than",
        "less_than": "less than",
    }
    return f"must be {words[kind]} {bound}"


def _phrase(error: ErrorDetails, prop: Mapping[str, Any], accepted: Iterable[str]) -> tuple[str, bool]:
    """(what is wrong, whether the offending input is worth showing)."""
    kind = error["type"]
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    if kind == "missing" or kind == "missing_argument":
        return "required", False
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        names = ", ".join(accepted)
        return (f"unknown parameter; this tool takes: {names}" if names else "unknown parameter"), False
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return _range(prop, ctx, kind), True
    if kind in ("enum", "literal_error"):
        options = prop.get("enum")
        expected = ", ".join(map(str, options)) if options else str(ctx.get("expected", ""))
        return f"must be one of: {expected}", True
    if kind == "string_too_short":
        least = ctx.get("min_length", 1)
        return ("must not be empty" if least == 1 else f"must be at least {least} characters"), False
    if kind == "string_too_long":
        given = error.get("input")
        length = f" (got {len(given)})" if isinstance(given, str) else ""
        return f"must be at most {ctx.get('max_length')} characters{length}", False
    if kind in _TYPE_PHRASES:
        return _TYPE_PHRASES[kind], True
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if message.startswith("Input should be "):
        message = "must be " + message.removeprefix("Input should be ")
    return message[:1].lower() + message[1:], True


def _field(loc: list[str]) -> str:
    """`limit`, `items.0.name`; a name that is not identifier-like (an unknown parameter) is quoted."""
    if not loc:
        return "input"
    joined = ".".join(loc)
    return joined if _NAME.fullmatch(joined) else shown_value(joined)


def error_line(error: ErrorDetails, schema: Mapping[str, Any] | None = None) -> str:
    loc = [str(part) for part in error["loc"]]
    field = _field(loc)
    prop = _property(schema, loc[0]) if loc else {}
    accepted = sorted((schema or {}).get("properties", {}))
    phrase, show_input = _phrase(error, prop, accepted)
    if show_input and "input" in error:
        phrase += f" (got {shown_value(error['input'])})"
    return f"{field}: {phrase}"


def describe_validation_error(exc: ValidationError, schema: Mapping[str, Any] | None = None) -> str:
    """One line per invalid field (at most MAX_LINES), no URLs, no pydantic jargon."""
    lines = [error_line(e, schema) for e in exc.errors(include_url=False)]
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES], f"... and {len(lines) - MAX_LINES} more invalid fields"]
    return "\n".join(lines)
