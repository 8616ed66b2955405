"""Build → index → rank every query under every configuration compared → tables and JSON."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.quality import adapter
from bench.quality.build import Built, build_library
from bench.quality.metrics import lolo_choice, lolo_ranks
from bench.quality.model import Query, QuerySet
from bench.quality.suite import CACHE, Library
from server.settings import Settings

Ranked = dict[str, dict[str, dict[str, list[int | None]]]]  # config -> library -> set -> ranks


def weights_name(w: Mapping[str, float]) -> str:
    """The weights that differ from the product's, `key=value,...` ("product" when none do)."""
    changed = [f"{k}={v:g}" for k, v in sorted(w.items()) if adapter.PRODUCT_WEIGHTS.get(k) != v]
    return ",".join(changed) or "product"


def parse_config(spec: str) -> tuple[str, dict[str, float]]:
    """`NAME=key:value,key:value` → (NAME, weights); keys not given keep the product's values."""
    name, sep, body = spec.partition("=")
    if not sep or not name:
        raise SystemExit(f"--config {spec!r}: expected NAME=key:value,... (e.g. strong-ident=identifier:2)")
    weights = dict(adapter.PRODUCT_WEIGHTS)
    for item in body.split(","):
        key, colon, value = item.partition(":")
        try:
            weights[key.strip()] = float(value)
        except ValueError:
            raise SystemExit(f"--config {spec!r}: {item!r} is not key:number") from None
        if not colon:
            raise SystemExit(f"--config {spec!r}: {item!r} is not key:number")
    try:
        adapter.weights_of(weights)
    except ValueError as exc:
        raise SystemExit(f"--config {spec!r}: {exc}") from None
    return name, weights


@dataclass
class Run:
    built: list[Built]
    sets: list[QuerySet]
    compare: list[str]
    ranked: Ranked = field(default_factory=dict)
    lolo: dict[str, str] = field(default_factory=dict)  # library -> chosen weights
    index: dict[str, dict[str, float]] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)  # library -> queries whose targets were not indexed
    seconds: dict[str, float] = field(default_factory=dict)

    def queries(self, b: Built) -> dict[str, list[Query]]:
        return {s: [q for q in b.queries if q.set == s] for s in self.sets}


def build_all(
    libs: Sequence[Library], max_files: int | None, seed: int, cap: int, log: Callable[[str], None]
) -> list[Built]:
    return [build_library(lib, adapter.indexable, max_files=max_files, seed=seed, cap=cap, log=log) for lib in libs]


async def index_all(
    engine: adapter.Engine, built: Sequence[Built], log: Callable[[str], None]
) -> dict[str, dict[str, float]]:
    out = {}
    for b in built:
        stats = await engine.index(b.project_id, b.tree, b.library.name)
        out[b.library.name] = {"files": stats.files, "chunks": stats.chunks, "embedded_now": stats.embedded_now,
                               "seconds": round(stats.seconds, 1)}  # fmt: skip
        log(f"indexed {b.library.key}: {stats.files} files, {stats.chunks} chunks "
            f"({stats.embedded_now} embedded now) in {stats.seconds:.0f} s")  # fmt: skip
    return out


async def evaluate(
    settings: Settings,
    built: list[Built],
    sets: list[QuerySet],
    compare: list[str],
    custom: Mapping[str, Mapping[str, float]],
    log: Callable[[str], None] = print,
) -> Run:
    run = Run(built, sets, compare)
    started = time.monotonic()
    async with adapter.Engine(settings, CACHE / "features") as engine:
        run.index = await index_all(engine, built, log)
        run.seconds["index"] = round(time.monotonic() - started, 1)
        weight_configs: dict[str, Mapping[str, float]] = {n: w for n, w in adapter.NAMED.items() if n in compare}
        weight_configs.update(custom)
        grid = {weights_name(w): w for w in adapter.GRID} if "lolo" in compare else {}
        for b in built:
            lib = b.library.name
            t0 = time.monotonic()
            indexed = await engine.indexed_paths(b.project_id)
            per_set = {}
            for s, qs in run.queries(b).items():
                kept = [q for q in qs if any(t.path in indexed for t in q.targets)]
                run.dropped[lib] = run.dropped.get(lib, 0) + len(qs) - len(kept)
                per_set[s] = kept
            for s, qs in per_set.items():
                texts = [q.text for q in qs]
                if "product" in compare:
                    hits = await engine.product(b.project_id, texts)
                    _put(run.ranked, "product", lib, s, [q.rank_in(h) for q, h in zip(qs, hits, strict=True)])
                if weight_configs or grid:
                    features = await engine.features(b.project_id, texts, s)
                    for name, w in weight_configs.items():
                        ranks = [q.rank_in(adapter.rerank(features, i, w)) for i, q in enumerate(qs)]
                        _put(run.ranked, name, lib, s, ranks)
                    if grid:
                        _sweep(run.ranked, grid, features, qs, lib, s)
            log(f"ranked {lib}: {sum(len(v) for v in per_set.values())} queries in {time.monotonic() - t0:.0f} s")
    if grid:
        libraries = [b.library.name for b in built]
        run.lolo = lolo_choice(run.ranked, list(grid), libraries)
        run.ranked["lolo"] = lolo_ranks(run.ranked, run.lolo)
        for name in grid:
            if name not in compare:
                run.ranked.pop(name, None)  # the sweep's own tables are not reported
    run.seconds["total"] = round(time.monotonic() - started, 1)
    return run


def _sweep(ranked: Ranked, grid: Mapping[str, Mapping[str, float]], features: adapter.FeatureSet,
           qs: Sequence[Query], lib: str, s: str) -> None:  # fmt: skip
    """The sweep's configurations, vectorised; checked against `adapter.rerank` at the product's weights."""
    prepared = adapter.prepared(features)
    for name, w in grid.items():
        blend = adapter.blend_of(w)
        ranks = [q.rank_in(adapter.fast_rerank(p, blend)) for q, p in zip(qs, prepared, strict=True)]
        _put(ranked, name, lib, s, ranks)
    product = weights_name(adapter.PRODUCT_WEIGHTS)
    exact = [q.rank_in(adapter.rerank(features, i, adapter.PRODUCT_WEIGHTS)) for i, q in enumerate(qs)]
    if product in grid and ranked[product][lib][s] != exact:
        raise RuntimeError(f"{lib}/{s}: the vectorised blend disagrees with adapter.rerank")


def _put(ranked: Ranked, config: str, lib: str, s: str, ranks: list[int | None]) -> None:
    ranked.setdefault(config, {}).setdefault(lib, {})[s] = ranks


def results_path(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    folder = Path(__file__).resolve().parents[1] / "results"
    folder.mkdir(exist_ok=True)
    return folder / time.strftime("quality-%Y%m%d-%H%M%S.json")


def load_average() -> float:
    return os.getloadavg()[0]


def to_json(run: Run, args: dict[str, Any], tables: dict[str, Any]) -> str:
    return json.dumps(
        {
            "args": args,
            "suite": {
                b.library.name: {
                    "version": b.library.version,
                    "language": b.library.language,
                    "project": b.project_id,
                    **b.info,
                }
                for b in run.built
            },
            "index": run.index,
            "seconds": run.seconds,
            "dropped_unindexed": run.dropped,
            "lolo_choice": run.lolo,
            **tables,
            "per_query": run.ranked,
        },
        indent=1,
    )
