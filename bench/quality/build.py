"""Builds one library's benchmark tree (the sampled files, doc comments blanked, line numbers
kept) and its query sets, cached under ~/.cache/codebase-bench/quality/ and rebuilt only when the
sample parameters or the suite's rules change."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.quality import analysis, model, pydefs, queries, sections, suite, text, tsdefs
from bench.quality.analysis import FileAnalysis, analyse
from bench.quality.fetch import source_tree
from bench.quality.model import Query, QuerySet
from bench.quality.suite import CACHE, Library

# Any change to the rules (these modules' source) makes every cached tree and query set stale.
_RULE_MODULES = (analysis, model, pydefs, queries, sections, suite, text, tsdefs)
RULES = hashlib.sha256(b"".join(Path(str(m.__file__)).read_bytes() for m in _RULE_MODULES)).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Built:
    library: Library
    tree: Path  # the root to index
    project_id: str
    queries: list[Query]
    info: dict[str, Any]  # files, candidate counts per set, build seconds


def _label(max_files: int | None, seed: int, cap: int) -> str:
    return f"m{max_files or 'all'}-s{seed}-c{cap}"


def _write_tree(dest: Path, chosen: dict[str, bytes]) -> None:
    """Writes only what changed, so an unchanged file keeps its mtime and re-indexing skips it."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel, data in chosen.items():
        target = dest / rel
        if target.is_file() and target.read_bytes() == data:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for root, _dirs, names in os.walk(dest, topdown=False):
        for name in names:
            rel = Path(root, name).relative_to(dest).as_posix()
            if rel not in chosen:
                Path(root, name).unlink()
        if root != str(dest) and not os.listdir(root):
            os.rmdir(root)


def _blanked(root: Path, rel: str) -> bytes:
    """The file as indexed: its doc comments blanked (a file that is not UTF-8 is kept as it is)."""
    data = (root / rel).read_bytes()
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    f = analyse(rel, decoded.replace("\r\n", "\n"))
    return data if f.blanked == decoded else f.blanked.encode("utf-8", "surrogatepass")


def _candidates(
    lib: Library, root: Path, indexable: Callable[[Path], list[str]], seed: int
) -> tuple[list[str], dict[QuerySet, list[Query]]]:
    """Every indexable file and every candidate query of the whole library (cached: analysing a
    large library takes minutes; samples of any size are drawn from this)."""
    cached = CACHE / "candidates" / f"{lib.key}-s{seed}.json.gz"
    if cached.exists():
        data = json.loads(gzip.decompress(cached.read_bytes()))
        if data["rules"] == RULES:
            found = {s: [Query.from_json(q) for q in qs] for s, qs in data["candidates"].items()}
            return data["files"], found
    files: list[FileAnalysis] = []
    all_files = indexable(root)
    for rel in all_files:
        try:
            decoded = (root / rel).read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            continue  # indexed as it is, never a query's answer
        files.append(analyse(rel, decoded.replace("\r\n", "\n")))
    candidates = queries.all_candidates(lib, files, seed)
    payload = {
        "rules": RULES,
        "files": all_files,
        "candidates": {s: [q.to_json() for q in qs] for s, qs in candidates.items()},
    }
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(gzip.compress(json.dumps(payload).encode()))
    return all_files, candidates


def build_library(
    lib: Library,
    indexable: Callable[[Path], list[str]],
    *,
    max_files: int | None,
    seed: int,
    cap: int,
    log: Callable[[str], None] = print,
) -> Built:
    label = _label(max_files, seed, cap)
    tree = CACHE / "trees" / lib.key / label
    manifest = CACHE / "queries" / f"{lib.key}-{label}.json"
    project_id = f"qb-{lib.key}-{label}"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        if data.get("rules") == RULES and tree.is_dir():
            return Built(lib, tree, project_id, [Query.from_json(q) for q in data["queries"]], data["info"])
    started = time.monotonic()
    root = source_tree(lib)
    all_files, candidates = _candidates(lib, root, indexable, seed)
    chosen = queries.sample(lib.name, all_files, candidates, max_files=max_files, cap=cap, seed=seed)
    _write_tree(tree, {rel: _blanked(root, rel) for rel in sorted(chosen.files)})
    picked = [q for s in model.QUERY_SETS for q in chosen.queries.get(s, [])]
    info = {
        "files_in_library": len(all_files),
        "files_indexed": len(chosen.files),
        "candidates": {s: len(v) for s, v in candidates.items()},
        "queries": {s: len(chosen.queries.get(s, [])) for s in model.QUERY_SETS},
        "build_seconds": round(time.monotonic() - started, 1),
    }
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"rules": RULES, "info": info, "queries": [q.to_json() for q in picked]}))
    log(f"built {lib.key} {label}: {info}")
    return Built(lib, tree, project_id, picked, info)


def clear(lib: Library) -> None:
    """Forget a library's unpacked source and trees (downloads stay)."""
    shutil.rmtree(CACHE / "src" / lib.key, ignore_errors=True)
    (CACHE / "src" / f".{lib.key}.complete").unlink(missing_ok=True)
    shutil.rmtree(CACHE / "trees" / lib.key, ignore_errors=True)


def counts(built: Built) -> dict[QuerySet, int]:
    out: dict[QuerySet, int] = dict.fromkeys(model.QUERY_SETS, 0)
    for q in built.queries:
        out[q.set] += 1
    return out
