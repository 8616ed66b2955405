"""One file of a library: its blanked copy, its definitions and its documentation sections."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bench.quality.model import Definition, Section
from bench.quality.pydefs import analyse_python
from bench.quality.sections import is_doc_file, sections_of
from bench.quality.tsdefs import SUFFIX_LANGUAGE, analyse_tree_sitter

_MIRROR_DIRS = frozenset({"src", "lib", "dist", "build", "esm", "esm5", "cjs", "types", "es", "umd", "mjs", "bundles"})
_SCRIPT_SUFFIX = re.compile(r"(\.d)?\.(ts|mts|cts|tsx|js|mjs|cjs|jsx)$")
_TEST_PATH = re.compile(
    r"(^|/)(tests?|__tests__|spec)/|(^|/)test_[^/]*\.py$|_tests?\.(py|rs)$|\.(test|spec)\.[cm]?[jt]sx?$"
)


def language_of(path: str) -> str | None:
    if path.endswith(".py"):
        return "python"
    dot = path.rfind(".")
    return SUFFIX_LANGUAGE.get(path[dot:].lower()) if dot >= 0 else None


def mirror_path(path: str) -> str:
    """The path with build-output and source-root folders and script suffixes removed: the files
    `src/internal/map.ts`, `dist/cjs/internal/map.js` and `dist/types/internal/map.d.ts` are copies
    of one module, `internal/map`."""
    parts = path.split("/")
    while len(parts) > 1 and parts[0] in _MIRROR_DIRS:
        parts = parts[1:]
    return _SCRIPT_SUFFIX.sub("", "/".join(parts))


def is_test_path(path: str) -> bool:
    return _TEST_PATH.search(path) is not None


@dataclass(frozen=True, slots=True)
class FileAnalysis:
    path: str
    language: str | None
    blanked: str  # the text to index
    definitions: tuple[Definition, ...]
    sizes: tuple[int, ...]  # per definition: non-blank lines from its header to its end, after blanking
    sections: tuple[Section, ...]


def analyse(path: str, text: str) -> FileAnalysis:
    language = language_of(path)
    definitions: list[Definition] = []
    blanked = text
    if language == "python":
        blanked, definitions = analyse_python(path, text)
    elif language is not None:
        blanked, definitions = analyse_tree_sitter(path, language, text)
    lines = blanked.split("\n")
    sizes = tuple(sum(1 for line in lines[d.header - 1 : d.end] if line.strip()) for d in definitions)
    sections = tuple(sections_of(path, text)) if is_doc_file(path) else ()
    return FileAnalysis(path, language, blanked, tuple(definitions), sizes, sections)


def logical_key(d: Definition) -> tuple[str, str | None, str]:
    """Copies of one definition (a TypeScript source and its compiled JavaScript) share this key."""
    return (mirror_path(d.path), d.container, d.name)
