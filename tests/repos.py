"""Real little repositories for tests, written to disk: the one place tests make repositories."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

_PY_TEMPLATE = '''"""Module {i}: helpers for area {i}."""

import json


def load_settings_{i}(path):
    """Read the JSON settings file number {i}."""
    with open(path) as fh:
        return json.load(fh)


class Service{i}:
    """Coordinates work item {i}."""

    def __init__(self, name):
        self.name = name
        self.calls = 0

    def run(self, payload):
        self.calls += 1
        total = 0
        for key, value in payload.items():
            total += len(key) * {i} + int(value)
        return total

    def describe(self):
        return f"service {i} named {{self.name}} ran {{self.calls}} times"
'''


def make_python_repo(root: Path, files: int, *, prefix: str = "mod") -> Path:
    """`files` Python modules, each with a function and a class with methods (~4 chunks a file), and a README."""
    root.mkdir(parents=True, exist_ok=True)
    pkg = root / "pkg"
    pkg.mkdir(exist_ok=True)
    for i in range(files):
        (pkg / f"{prefix}_{i:04d}.py").write_text(_PY_TEMPLATE.format(i=i))
    (root / "README.md").write_text("# Test repository\n\nGenerated for tests.\n")
    return root


def write_files(root: Path, files: Mapping[str, str | bytes], *, dedent: bool = True) -> Path:
    """Write `files` (relative path → content) under `root`, making folders; returns `root`.

    Text is written as UTF-8, dedented and stripped of leading blank lines unless `dedent=False`, so
    sources can be written indented inside a test. Bytes are written as they are.
    """
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip("\n") if dedent else content, encoding="utf-8")
    return root
