"""The one error boundary of the MCP server: every exception becomes a clear message.

- `UserError` (server/errors.py): its message, as is.
- pydantic validation errors, FastMCP's argument validation and our own models alike: one
  short line per field (server/validation.py).
- anything else: logged with its traceback at ERROR under a reference id; the client gets
  `internal error (ref 3f2a9c1e); the server log has the details` (with DEBUG on, also the
  exception's type and message).

Tools answer with an error result (`isError`); resources and prompts with a JSON-RPC error
(invalid params for user and validation errors, internal error otherwise). Unknown tools and
resources and protocol errors (`MCPError`) pass through unchanged: FastMCP already words them.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fastmcp.exceptions import DisabledError, FastMCPError, NotFoundError, ToolError
from fastmcp.prompts.base import PromptResult
from fastmcp.resources.base import ResourceResult
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools.base import ToolResult
from fastmcp.tools.function_tool import _ToolBodyError
from mcp import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    CallToolRequestParams,
    GetPromptRequestParams,
    ReadResourceRequestParams,
)
from pydantic import ValidationError

from server.errors import UserError
from server.settings import Settings
from server.validation import describe_validation_error

__all__ = ["ErrorMiddleware", "Failure", "classify"]

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 2_000

# FastMCP's own wrappers around what a tool raised: look through them to the cause.
_WRAPPERS: tuple[type[BaseException], ...] = (FastMCPError, _ToolBodyError)
_PASS_THROUGH: tuple[type[BaseException], ...] = (NotFoundError, DisabledError, MCPError)
# FastMCP logs every failed call itself (with a traceback even for a bad argument); this
# middleware logs each failure once, at the level it deserves, so those records are dropped.
_FASTMCP_FAILURE_LOGS = ("Error calling tool", "Invalid arguments for tool", "Error reading resource",
                         "Error rendering prompt")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Failure:
    kind: Literal["user", "validation", "internal"]
    message: str


def _root(exc: BaseException) -> BaseException:
    """What really went wrong: `exc` without FastMCP's wrappers and single-member groups."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        elif isinstance(exc, _WRAPPERS) and exc.__cause__ is not None:
            exc = exc.__cause__
    return exc


def classify(
    exc: BaseException, *, where: str, schema: Mapping[str, Any] | None = None, debug: bool = False
) -> Failure:
    """The client's message for `exc`; internal errors are logged here, under their reference id."""
    root = _root(exc)
    if isinstance(root, UserError):
        message = str(root) or type(root).__name__
        if len(message) > MAX_MESSAGE_CHARS:  # a message quoting huge input stays readable
            message = message[: MAX_MESSAGE_CHARS - 3] + "..."
        log.info("%s refused: %s", where, message)
        return Failure("user", message)
    if isinstance(root, ValidationError):
        message = describe_validation_error(root, schema)
        log.info("%s: invalid input: %s", where, message.replace("\n", "; "))
        return Failure("validation", message)
    if isinstance(root, FastMCPError) and root.__cause__ is None and str(root):
        return Failure("user", str(root))  # raised on purpose, with its own message
    ref = secrets.token_hex(4)
    log.error("internal error (ref %s) in %s", ref, where, exc_info=(type(root), root, root.__traceback__))
    detail = f": {type(root).__name__}: {root}"[:300] if debug else ""
    return Failure("internal", f"internal error (ref {ref}){detail}; the server log has the details")


class _DropFastMCPFailureLogs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(_FASTMCP_FAILURE_LOGS))


_FILTER = _DropFastMCPFailureLogs()


class ErrorMiddleware(Middleware):
    """Install first (outermost) so it sees every failure: `FastMCP(middleware=[ErrorMiddleware(...)])`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings  # read per failure: DEBUG may be switched at runtime
        fastmcp_log = logging.getLogger("fastmcp.server.server")
        if _FILTER not in fastmcp_log.filters:
            fastmcp_log.addFilter(_FILTER)

    async def on_call_tool(
        self,
        context: MiddlewareContext[CallToolRequestParams],
        call_next: CallNext[CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        try:
            return await call_next(context)
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            name = context.message.name
            schema = await self._input_schema(context, name)
            failure = classify(exc, where=f"tool {name!r}", schema=schema, debug=self.settings.debug)
            raise ToolError(failure.message) from exc

    async def on_read_resource(
        self,
        context: MiddlewareContext[ReadResourceRequestParams],
        call_next: CallNext[ReadResourceRequestParams, ResourceResult],
    ) -> ResourceResult:
        try:
            return await call_next(context)
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            failure = classify(exc, where=f"resource {str(context.message.uri)!r}", debug=self.settings.debug)
            raise _protocol_error(failure) from exc

    async def on_get_prompt(
        self,
        context: MiddlewareContext[GetPromptRequestParams],
        call_next: CallNext[GetPromptRequestParams, PromptResult],
    ) -> PromptResult:
        try:
            return await call_next(context)
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            failure = classify(exc, where=f"prompt {context.message.name!r}", debug=self.settings.debug)
            raise _protocol_error(failure) from exc

    @staticmethod
    async def _input_schema(context: MiddlewareContext[Any], name: str) -> Mapping[str, Any] | None:
        """The tool's input schema, for range bounds and accepted values in validation messages."""
        server = context.fastmcp_context.fastmcp if context.fastmcp_context else None
        if server is None:
            return None
        try:
            tool = await server.get_tool(name)
        except Exception:  # only message quality depends on it
            return None
        return tool.parameters if tool is not None else None


def _protocol_error(failure: Failure) -> MCPError:
    code = INTERNAL_ERROR if failure.kind == "internal" else INVALID_PARAMS
    return MCPError(code=code, message=failure.message)
