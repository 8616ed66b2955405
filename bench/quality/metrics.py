"""Ranks → MRR@10, R@1, R@10; leave-one-library-out choice of a configuration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TOP = 10
Ranks = Sequence[int | None]
# scores[config][library][query set] = the rank of each query's first correct result (None: not in the top 10)
Table = Mapping[str, Mapping[str, Mapping[str, Ranks]]]


@dataclass(frozen=True, slots=True)
class Metrics:
    n: int
    mrr: float  # MRR@10
    r1: float
    r10: float

    def as_dict(self) -> dict[str, float]:
        return {"n": self.n, "mrr10": round(self.mrr, 4), "r1": round(self.r1, 4), "r10": round(self.r10, 4)}


def metrics(ranks: Ranks, top: int = TOP) -> Metrics:
    n = len(ranks)
    if n == 0:
        return Metrics(0, 0.0, 0.0, 0.0)
    found = [r for r in ranks if r is not None and r <= top]
    return Metrics(n, sum(1.0 / r for r in found) / n, sum(1 for r in found if r == 1) / n, len(found) / n)


def objective(table: Table, config: str, libraries: Sequence[str]) -> float:
    """Mean MRR@10 over the (library, query set) cells of `libraries` that have queries: each library
    and set weighs the same, however many queries it has."""
    cells = [metrics(ranks).mrr for lib in libraries for ranks in table[config].get(lib, {}).values() if len(ranks)]
    return sum(cells) / len(cells) if cells else 0.0


def lolo_choice(table: Table, configs: Sequence[str], libraries: Sequence[str]) -> dict[str, str]:
    """For each library, the configuration best on all the OTHER libraries (ties: the earlier one)."""
    chosen = {}
    for held_out in libraries:
        train = [lib for lib in libraries if lib != held_out]
        best = configs[0]
        best_score = objective(table, best, train)
        for config in configs[1:]:
            score = objective(table, config, train)
            if score > best_score:
                best, best_score = config, score
        chosen[held_out] = best
    return chosen


def lolo_ranks(table: Table, chosen: Mapping[str, str]) -> dict[str, dict[str, list[int | None]]]:
    """Held-out ranks: each library scored under the configuration chosen without it."""
    return {lib: {s: list(r) for s, r in table[config][lib].items()} for lib, config in chosen.items()}
