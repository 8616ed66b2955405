"""The pinned libraries. Every corpus is built from these exact versions, as each ships on its
package registry (sources, tests, docs and all); nothing else is ever indexed by the suite."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CACHE = Path.home() / ".cache" / "codebase-bench" / "quality"
SHARED_SDISTS = Path.home() / ".cache" / "codebase-bench" / "sdist"  # the standard corpus' downloads
LANGUAGES = ("python", "js", "rust", "c")


@dataclass(frozen=True, slots=True)
class Library:
    name: str
    version: str
    language: Literal["python", "js", "rust", "c"]  # how results are grouped
    registry: Literal["pypi", "npm"]
    query_languages: frozenset[str]  # file languages whose definitions make doc/ident queries

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"


_PY = frozenset({"python"})
_JS = frozenset({"javascript", "typescript", "tsx"})
_RUST = frozenset({"rust"})
_C = frozenset({"c"})

LIBRARIES: tuple[Library, ...] = (
    Library("django", "5.2.8", "python", "pypi", _PY),
    Library("sqlalchemy", "2.0.44", "python", "pypi", _PY),
    Library("sympy", "1.14.0", "python", "pypi", _PY),
    Library("axios", "1.21.1", "js", "npm", _JS),
    Library("commander", "15.1.0", "js", "npm", _JS),
    Library("rxjs", "7.8.2", "js", "npm", _JS),
    Library("zod", "4.6.7", "js", "npm", _JS),
    # The only Rust library whose sdist pip can download here: the others need crates.io to prepare
    # their metadata; orjson vendors its crates.
    Library("orjson", "3.13.0", "rust", "pypi", _RUST),
    Library("ujson", "6.1.0", "c", "pypi", _C),
    Library("msgpack", "1.2.4", "c", "pypi", _C),
    Library("zstandard", "0.25.0", "c", "pypi", _C),
    Library("markupsafe", "3.0.4", "c", "pypi", _C),
)


def select(languages: list[str] | None = None, names: list[str] | None = None) -> list[Library]:
    unknown = sorted(set(languages or []) - set(LANGUAGES)) + sorted(set(names or []) - {lib.name for lib in LIBRARIES})
    if unknown:
        raise SystemExit(f"unknown language or library: {', '.join(unknown)} (see bench/quality/suite.py)")
    return [
        lib for lib in LIBRARIES if (not languages or lib.language in languages) and (not names or lib.name in names)
    ]
