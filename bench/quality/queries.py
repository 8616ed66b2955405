"""The four query sets of one library, built from its analysed files, and the file sample.

doc    first sentence of a definition's doc comment → that definition (index: docs blanked).
       Kept: 4–40 words of prose, a definition with ≥ 3 non-blank lines left once blanked.
       Sentences that several different definitions share are dropped; copies of one
       definition (same module path once build folders and suffixes are removed, same name)
       make one query with several targets.
ident  the name as a user types it → its definition: `name`, or `Container.name`
       (`Type::name` in Rust), only where exactly one definition in the library (copies
       aside) answers to that form; when both forms qualify one is picked at random.
docs   a docs-seeking question made from a documentation heading ("how do I …", "guide to
       …", …) → that section. Release notes, licences and generic headings are left out;
       a heading repeated within the library is dropped.
tests  "tests for NAME" → the test functions named `test_NAME…` (NAME defined once, ≥ 5
       characters, 1–20 such tests).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.quality.analysis import FileAnalysis, is_test_path, logical_key
from bench.quality.model import Definition, Query, QuerySet, Target
from bench.quality.sections import docs_query, usable_heading
from bench.quality.suite import Library
from bench.quality.text import first_sentence, is_prose, normalise

GOLD_SHARE = 0.6  # at most this share of a --max-files sample is chosen for holding gold targets


def _rng(seed: int, *parts: str) -> random.Random:
    return random.Random(":".join([str(seed), *parts]))


def _separator(language: str) -> str:
    return "::" if language == "rust" else "."


def doc_queries(lib: Library, files: Sequence[FileAnalysis]) -> list[Query]:
    by_text: dict[str, list[tuple[str, Definition]]] = defaultdict(list)
    for f in files:
        for d, size in zip(f.definitions, f.sizes, strict=True):
            if d.doc is None or d.language not in lib.query_languages or size < 3:
                continue
            sentence = first_sentence(d.doc)
            if is_prose(sentence):
                by_text[normalise(sentence)].append((sentence, d))
    out = []
    for group in by_text.values():
        if len({logical_key(d) for _, d in group}) != 1:
            continue  # the same words document different things: no right answer
        d = group[0][1]
        targets = tuple(sorted({Target.of_definition(d) for _, d in group}, key=lambda t: (t.path, t.start)))
        name = f"{d.container}{_separator(d.language)}{d.name}" if d.container else d.name
        out.append(Query("doc", lib.name, lib.language, group[0][0], targets, name))
    return sorted(out, key=lambda q: (q.targets[0].path, q.targets[0].start))


def ident_queries(lib: Library, files: Sequence[FileAnalysis], seed: int) -> list[Query]:
    every = [d for f in files for d in f.definitions]
    bare: dict[str, set[object]] = defaultdict(set)
    qualified: dict[tuple[str | None, str], set[object]] = defaultdict(set)
    copies: dict[object, list[Definition]] = defaultdict(list)
    for d in every:
        bare[d.name].add(logical_key(d))
        qualified[(d.container, d.name)].add(logical_key(d))
        copies[logical_key(d)].append(d)
    rng = _rng(seed, lib.name, "ident")
    out = []
    for key in sorted(copies, key=repr):
        d = copies[key][0]
        if d.language not in lib.query_languages or len(d.name) < 3 or d.name.startswith(("__", "test")):
            continue
        forms = []
        if len(bare[d.name]) == 1:
            forms.append(d.name)
        if d.container and len(qualified[(d.container, d.name)]) == 1:
            forms.append(f"{d.container}{_separator(d.language)}{d.name}")
        if not forms:
            continue
        text = rng.choice(forms)
        targets = tuple(sorted({Target.of_definition(c) for c in copies[key]}, key=lambda t: (t.path, t.start)))
        out.append(Query("ident", lib.name, lib.language, text, targets, text))
    return out


def docs_queries(lib: Library, files: Sequence[FileAnalysis], seed: int) -> list[Query]:
    found = [s for f in files for s in f.sections if s.body_lines >= 1 and usable_heading(s.heading, lib.name)]
    counts: dict[str, int] = defaultdict(int)
    for s in found:
        counts[normalise(s.heading)] += 1
    rng = _rng(seed, lib.name, "docs")
    return [
        Query("docs", lib.name, lib.language, docs_query(s.heading, rng), (Target.of_section(s),), s.heading)
        for s in found
        if counts[normalise(s.heading)] == 1
    ]


def tests_queries(lib: Library, files: Sequence[FileAnalysis]) -> list[Query]:
    every = [d for f in files for d in f.definitions]
    tests = [
        d
        for d in every
        if d.kind in ("function", "method") and d.name.lower().startswith("test") and is_test_path(d.path)
    ]
    subjects: dict[str, set[object]] = defaultdict(set)
    for d in every:
        if not is_test_path(d.path):
            subjects[d.name].add(logical_key(d))
    out = []
    for name in sorted(n for n, keys in subjects.items() if len(keys) == 1 and len(n) >= 5 and not n.startswith("_")):
        pattern = re.compile(rf"test_?{re.escape(name)}(_|$)", re.I)
        hits = [t for t in tests if pattern.match(t.name)]
        if 1 <= len(hits) <= 20:
            targets = tuple(sorted({Target.of_definition(t) for t in hits}, key=lambda t: (t.path, t.start)))
            out.append(Query("tests", lib.name, lib.language, f"tests for {name}", targets, name))
    return out


def all_candidates(lib: Library, files: Sequence[FileAnalysis], seed: int) -> dict[QuerySet, list[Query]]:
    return {
        "doc": doc_queries(lib, files),
        "ident": ident_queries(lib, files, seed),
        "docs": docs_queries(lib, files, seed),
        "tests": tests_queries(lib, files),
    }


@dataclass(frozen=True, slots=True)
class Sample:
    files: frozenset[str]
    queries: dict[QuerySet, list[Query]]


def _restricted(q: Query, files: frozenset[str]) -> Query | None:
    targets = tuple(t for t in q.targets if t.path in files)
    if not targets:
        return None
    return Query(q.set, q.library, q.language, q.text, targets, q.about, q.extra)


def sample(
    library: str,
    all_files: Iterable[str],
    candidates: dict[QuerySet, list[Query]],
    *,
    max_files: int | None,
    cap: int,
    seed: int,
) -> Sample:
    """Up to `cap` queries per set and the files to index: with `max_files`, the files holding a
    chosen query's first target (at most GOLD_SHARE of the budget; a query whose file is already
    chosen costs nothing) plus a seeded random fill of the other files; without, every file."""
    files = sorted(set(all_files))
    pools = {s: list(qs) for s, qs in candidates.items()}
    for s, qs in pools.items():
        _rng(seed, library, s, "order").shuffle(qs)
    if max_files is None or max_files >= len(files):
        chosen_all = frozenset(files)
        picked = {s: [r for q in qs if (r := _restricted(q, chosen_all))][:cap] for s, qs in pools.items()}
        return Sample(chosen_all, picked)
    budget = max(1, int(max_files * GOLD_SHARE))
    chosen: set[str] = set()
    picked_lists: dict[QuerySet, list[Query]] = {s: [] for s in pools}
    cursor = dict.fromkeys(pools, 0)
    active = [s for s in pools if pools[s]]
    while active:
        for s in list(active):
            qs = pools[s]
            while cursor[s] < len(qs):
                q = qs[cursor[s]]
                cursor[s] += 1
                paths = [t.path for t in q.targets]
                if any(p in chosen for p in paths):
                    picked_lists[s].append(q)
                    break
                if len(chosen) < budget:
                    chosen.add(paths[0])
                    picked_lists[s].append(q)
                    break
            if cursor[s] >= len(qs) or len(picked_lists[s]) >= cap:
                active.remove(s)
    rest = [f for f in files if f not in chosen]
    _rng(seed, library, "fill").shuffle(rest)
    chosen.update(rest[: max(0, max_files - len(chosen))])
    final = frozenset(chosen)
    return Sample(final, {s: [r for q in qs if (r := _restricted(q, final))] for s, qs in picked_lists.items()})
