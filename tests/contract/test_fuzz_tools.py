"""1,000 hostile calls across every tool: each failure must be a clear message, never a masked one.

A seeded generator (reproducible: FUZZ_SEED) sends wrong types, out-of-range numbers, huge strings,
NUL bytes, lone surrogates, unknown and malformed job ids, nonexistent and hostile paths, unknown
parameters and unicode junk, through a real in-memory FastMCP Client on the real database. Every
error must be a user error's message or validation lines; none may be masked ("Error calling
tool"), carry pydantic's raw text, or be an internal error.
"""

from __future__ import annotations

import logging
import os
import random
import re
import string
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastmcp import Client
from mcp import MCPError

from server.app import App
from tests.repos import make_python_repo

CALLS = 1_000
SEED = int(os.environ.get("FUZZ_SEED", "20261201"))
BANNED = ("Error calling tool", "errors.pydantic.dev", "internal error", "validation error for", "Traceback",
          "Input should be", "[type=")  # fmt: skip
VALIDATION_LINE = re.compile(r"^([A-Za-z_][\w.]*|'.*'|\".*\"): \S.*$")  # an odd unknown name is quoted

JUNK: list[Any] = [
    None, True, False, 0, -1, 1, 7, 2**31, 2**63, -(2**63), 10**30, 1.5, -0.0, "", " ", "\t\n", "\x00", "a\x00b",
    "x" * 100_000, "é" * 500, "🙂" * 200, "\ud800", "\u202e\u0000\uffff", "null", "undefined", "'; DROP TABLE x; --",
    "{}", "[]", [], [1, "2"], {}, {"a": {"b": [None]}}, "../../etc/passwd", "/etc/passwd", "%2e%2e%2f",
    "C:\\Windows\\System32", "\\\\server\\share", "~", "~/src", "not-a-uuid", "00000000-0000-0000-0000-000000000000",
    "3f2b8c1e-5d6a-4f7b-9c0d-1e2f3a4b5c6d-extra", "{3f2b8c1e-5d6a-4f7b-9c0d-1e2f3a4b5c6d}",
]  # fmt: skip


def _unicode_junk(rng: random.Random) -> str:
    alphabet = string.printable + "éßж中🙂\u0301\u200b\u202e\ufeff\x7f\x1b"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80)))


class Arguments:
    """Hostile values for each parameter name, mixed with a few valid ones so deeper code runs too."""

    def __init__(self, rng: random.Random, *, project_id: str, tmp: Path, tiny_repo: Path) -> None:
        self.rng = rng
        a_file = tmp / "a-file.txt"
        a_file.write_text("not a directory\n")
        paths = [str(tmp / "missing"), str(a_file), "relative/path", "/definitely/not/here", "/tmp/../etc",
                 "/" + "deep/" * 900, str(tmp) + "/\x00x", str(tmp / "é🙂"), "/proc/self/root/x"]  # fmt: skip
        self.paths = paths
        projects = [project_id, "bad id!", "x" * 70, None, "-leading"]
        job_ids = ["not-a-uuid", "00000000-0000-0000-0000-00000000000g"]
        self.by_name: dict[str, Callable[[], Any]] = {
            "project_id": lambda: rng.choice([*projects, f"never-made-{uuid.uuid4().hex[:6]}", _unicode_junk(rng)]),
            "job_id": lambda: rng.choice([*job_ids, str(uuid.uuid4()), uuid.uuid4().hex, _unicode_junk(rng)]),
            "repo_path": lambda: str(tiny_repo) if rng.random() < 0.03 else rng.choice(paths),
            "directory": lambda: rng.choice([str(tmp), *paths]),
            "force_reindex": lambda: rng.choice([True, False, "yes", "sometimes", 2]),
            "status": lambda: rng.choice(["pending", "running", "completed", "failed", "cancelled", "paused", "DONE"]),
            "limit": lambda: rng.choice([rng.randint(-1000, 1000), rng.randint(1, 50), "5", "five"]),
            "context_lines": lambda: rng.choice([rng.randint(-50, 50), rng.randint(0, 20)]),
            "query": lambda: rng.choice(["retry with backoff", "Service3.run", _unicode_junk(rng), "*" * 2000]),
            "repository": lambda: rng.choice([None, "repo", "missing-repo", str(uuid.uuid4())]),
            "language": lambda: rng.choice([None, "python", "klingon", "PYTHON"]),
            "path_glob": lambda: rng.choice([None, "pkg/**", "src/[abc", "**/*.py", "[!]", "{a,b}"]),
            "scope": lambda: rng.choice(["all", "code", "tests", "docs", "everything", "CODE"]),
        }

    def value(self, name: str) -> Any:
        roll = self.rng.random()
        if roll < 0.55 and name in self.by_name:
            return self.by_name[name]()
        if roll < 0.75:
            return _unicode_junk(self.rng)
        return self.rng.choice(JUNK)

    def for_tool(self, schema: dict[str, Any]) -> dict[str, Any]:
        props = list(schema.get("properties", {}))
        args = {name: self.value(name) for name in props if self.rng.random() < 0.75}
        if self.rng.random() < 0.08:
            args[self.rng.choice(["extra", "__proto__", "ctx", "", "limit " * 3])] = self.rng.choice(JUNK)
        return args


def _check(tool: str, args: dict[str, Any], text: str, problems: list[str]) -> None:
    lines = text.split("\n")
    is_validation = all(VALIDATION_LINE.match(line) for line in lines)
    if not text.strip() or any(b in text for b in BANNED) or (len(lines) > 1 and not is_validation):
        problems.append(f"{tool}({str(args)[:200]}) -> {text[:300]!r}")


async def test_hostile_calls_only_get_clear_errors(
    mcp_client: Client[Any], app: App, tmp_path: Path, project_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert app.worker is not None
    await app.worker.stop()  # a queued job stays pending: nothing indexes in the background
    app.worker = None
    tiny = make_python_repo(tmp_path / "tiny", 1)
    project = (await app.resolver.resolve(project_id, None, create=True)).project
    await app.index(project, tiny)  # something to search
    rng = random.Random(SEED)
    gen = Arguments(rng, project_id=project_id, tmp=tmp_path, tiny_repo=tiny)
    tools = {t.name: t.input_schema for t in await mcp_client.list_tools()}
    problems: list[str] = []
    outcomes = {"ok": 0, "error": 0}
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="server.mcp.middleware"):
        for i in range(CALLS):
            if i % 25 == 24:  # the resource too
                job_id = quote(str(gen.value("job_id")), safe="", errors="surrogatepass")  # a URI the client takes
                uri = f"indexing-job://{job_id}"
                try:
                    await mcp_client.read_resource(uri)
                except MCPError as exc:
                    _check("resource", {"uri": uri}, exc.error.message, problems)
                continue
            tool = rng.choice(sorted(tools))
            args = gen.for_tool(tools[tool])
            try:
                result = await mcp_client.call_tool(tool, args, raise_on_error=False)
            except Exception as exc:  # a protocol-level failure is a finding too
                problems.append(f"{tool}({str(args)[:200]}) raised {type(exc).__name__}: {str(exc)[:300]}")
                continue
            if result.is_error:
                outcomes["error"] += 1
                _check(tool, args, result.content[0].text, problems)  # type: ignore[union-attr]
            else:
                outcomes["ok"] += 1
    elapsed = time.monotonic() - started
    assert problems == [], f"{len(problems)} unclear errors (seed {SEED}):\n" + "\n".join(problems[:20])
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert outcomes["ok"] > 20 and outcomes["error"] > 500, outcomes  # both paths were exercised
    print(f"{CALLS} calls in {elapsed:.1f}s: {outcomes}")
