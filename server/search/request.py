"""A search request and its validation: limits, languages, path globs and identifier-like queries."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal, get_args

from server.errors import UserError
from server.indexer.languages import KNOWN_LANGUAGES, canonical_language
from server.indexer.roles import Role

MAX_LIMIT = 50
MAX_CONTEXT_LINES = 20
MAX_QUERY_CHARS = 1_000

Scope = Literal["all", "code", "tests", "docs"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
_SCOPE_ROLES: dict[Scope, tuple[Role, ...] | None] = {
    "all": None,
    "code": ("code",),
    "tests": ("test",),
    "docs": ("docs",),
}


def scope_roles(scope: Scope) -> tuple[Role, ...] | None:
    """The file roles a scope searches (None: every role)."""
    return _SCOPE_ROLES[scope]


class SearchError(UserError, ValueError):
    """A request that cannot be served; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class SearchRequest:
    query: str
    project_id: str | None = None
    repository: str | None = None  # name or id
    language: str | None = None
    path_glob: str | None = None
    limit: int = 10
    context_lines: int = 2
    scope: str = "all"

    def validated(self) -> SearchRequest:
        query = self.query.strip()
        if not query:
            raise SearchError("query is empty: describe the code you look for, or give an identifier")
        if len(query) > MAX_QUERY_CHARS:
            raise SearchError(f"query is {len(query)} characters long; at most {MAX_QUERY_CHARS} are allowed")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise SearchError(f"limit must be between 1 and {MAX_LIMIT}, got {self.limit}")
        if not 0 <= self.context_lines <= MAX_CONTEXT_LINES:
            raise SearchError(f"context_lines must be between 0 and {MAX_CONTEXT_LINES}, got {self.context_lines}")
        language = (self.language or "").strip().lower() or None
        if language is not None:
            language = known_language(language)
        glob = (self.path_glob or "").strip() or None
        if glob is not None:
            glob_to_regex(glob)  # raises SearchError on a malformed pattern
        repository = (self.repository or "").strip() or None
        scope = (self.scope or "all").strip().lower()
        if scope not in SCOPES:
            raise SearchError(f"scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")
        return SearchRequest(query, self.project_id, repository, language, glob, self.limit, self.context_lines, scope)


def known_language(name: str) -> str:
    """The stored name for a language filter (`py` → python), or a SearchError listing the known ones."""
    found = canonical_language(name)
    if found is None:
        close = difflib.get_close_matches(name, sorted(KNOWN_LANGUAGES), n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise SearchError(f"unknown language {name!r}{hint}. Known languages: {', '.join(sorted(KNOWN_LANGUAGES))}")
    return found


def glob_to_regex(glob: str) -> str:
    """Anchored regex for a path glob: `*` and `?` stay inside one path segment, `**` crosses
    segments (`src/**/*.py` matches `src/a.py`), `[abc]`/`[!abc]` are classes, and a pattern
    without `/` matches the file name at any depth (`*.py`). The regex uses only syntax that
    Python and PostgreSQL read alike, and every literal character is escaped."""
    pattern = glob.strip().replace("\\", "/")
    if not pattern:
        raise SearchError("path_glob is empty")
    if "/" not in pattern.rstrip("/"):
        pattern = "**/" + pattern
    pattern = pattern.lstrip("/")
    if pattern.endswith("/"):
        pattern += "**"
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            end = pattern.find("]", i + 2 if pattern.startswith(("[!", "[^"), i) else i + 1)
            if end == -1:
                raise SearchError(f"path_glob {glob!r}: '[' without a closing ']'")
            body = pattern[i + 1 : end]
            negate = body[:1] in ("!", "^")
            members = body[1:] if negate else body
            if not members:
                raise SearchError(f"path_glob {glob!r}: empty character class")
            escaped = "".join("\\" + c if c in "\\[]^" else c for c in members)  # '-' keeps meaning a range
            out.append(f"[{'^/' if negate else ''}{escaped}]")
            i = end + 1
        else:
            out.append(re.escape(ch))
            i += 1
    return "^" + "".join(out) + "$"


_IDENTIFIER = re.compile(r"[^\W\d][\w$]*(?:(?:\.|::|#|->)[^\W\d][\w$]*)*(?:\(\))?")
_SEPARATOR = re.compile(r"::|#|->")


def identifier_of(query: str) -> str | None:
    """`Foo.bar`, `Foo::bar`, `parse_config()`, `IndexingJobCreate` → the dotted identifier, else None."""
    text = query.strip()
    if not _IDENTIFIER.fullmatch(text):
        return None
    return _SEPARATOR.sub(".", text.removesuffix("()"))
