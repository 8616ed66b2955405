"""The suite's records: definitions and sections found in a library, queries and their gold targets.

Gold rule (engine-agnostic, by file and line range). A ranked result (path, start, end) answers a
target when it is in the target's file and

* definitions: its line range overlaps the definition and lies inside [lead, end], where `lead` is
  the first line of the decorators, attributes and comments directly above the definition (line
  numbers of the blanked copy, which are those of the original). A container (class, struct,
  trait, interface) must also be hit on its header line, so a method's chunk never answers for
  its class and a class outline never answers for its last method. Every part of a long
  definition split into several chunks counts.
* sections: its line range overlaps the section's lines (heading to the line before the next
  heading of any level); a chunk that merged a bare heading into the next section counts for both.

A query may have several targets (copies of one definition shipped twice, e.g. `src/x.ts` and
`dist/x.js`): any of them answers it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

QuerySet = Literal["doc", "ident", "docs", "tests"]
QUERY_SETS: tuple[QuerySet, ...] = ("doc", "ident", "docs", "tests")
CONTAINER_KINDS = frozenset({"class", "struct", "enum", "trait", "interface", "impl", "union"})


@dataclass(frozen=True, slots=True)
class Definition:
    path: str  # relative to the library root, "/"-separated
    language: str  # python | javascript | typescript | rust | c
    name: str  # bare name: `push`
    container: str | None  # `Vec` for `Vec::push`, None at top level
    kind: str  # function | method | class | struct | enum | trait | interface | type ...
    lead: int  # 1-based first line, decorators/attributes/comments directly above included
    header: int  # line of the definition itself (`def`, `fn`, `class` ...)
    end: int
    doc: str | None  # the doc comment's text without comment markers, None when undocumented

    @property
    def is_container(self) -> bool:
        return self.kind in CONTAINER_KINDS


@dataclass(frozen=True, slots=True)
class Section:
    path: str
    heading: str  # cleaned heading text
    start: int  # heading line (overline included for reStructuredText)
    end: int  # last line before the next heading, or the file's last line
    body_lines: int  # non-blank lines below the heading


@dataclass(frozen=True, slots=True)
class Target:
    path: str
    start: int
    end: int
    anchor: int | None = None  # a line the result must contain (a container's header)
    contained: bool = True  # the result must lie inside [start, end] (definitions), else overlap suffices

    @classmethod
    def of_definition(cls, d: Definition) -> Target:
        return cls(d.path, d.lead, d.end, d.header if d.is_container else None, True)

    @classmethod
    def of_section(cls, s: Section) -> Target:
        return cls(s.path, s.start, s.end, None, False)

    def answered_by(self, path: str, start: int, end: int) -> bool:
        if path != self.path or start > self.end or end < self.start:
            return False
        if self.contained and (start < self.start or end > self.end):
            return False
        return self.anchor is None or start <= self.anchor <= end


@dataclass(frozen=True, slots=True)
class Query:
    set: QuerySet
    library: str
    language: str  # the library's reporting language (python, js, rust, c)
    text: str
    targets: tuple[Target, ...]
    about: str = ""  # what the query was made from (qualified name, heading), for reading reports
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def rank_in(self, results: list[tuple[str, int, int]]) -> int | None:
        """1-based rank of the first result answering any target, None when none does."""
        for i, (path, start, end) in enumerate(results, start=1):
            if any(t.answered_by(path, start, end) for t in self.targets):
                return i
        return None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["targets"] = [asdict(t) for t in self.targets]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Query:
        targets = tuple(Target(**t) for t in data["targets"])
        return cls(data["set"], data["library"], data["language"], data["text"], targets, data.get("about", ""),
                   data.get("extra", {}))  # fmt: skip
