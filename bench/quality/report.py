"""The compact tables: language × query set (queries pooled over the language's libraries), every
query set over all languages (macro: each language weighs the same), and per library."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bench.quality.metrics import Metrics, metrics
from bench.quality.runner import Run

Cell = Callable[[Metrics], str]


def _fmt(m: Metrics) -> str:
    return f"{m.mrr:.3f} {m.r1:.3f} {m.r10:.3f}" if m.n else "    –     –     –"


def _pooled(run: Run, config: str, libraries: Sequence[str], s: str) -> Metrics:
    ranks = [r for lib in libraries for r in run.ranked.get(config, {}).get(lib, {}).get(s, [])]
    return metrics(ranks)


def same_ranks(run: Run, a: str, b: str) -> float | None:
    """Share of queries ranked alike by two configurations (re-ranking cached features at the
    product's weights should reproduce the product: anything else means the adapter drifted)."""
    if a not in run.ranked or b not in run.ranked:
        return None
    pairs = [
        (x, y)
        for lib, sets in run.ranked[a].items()
        for s, ranks in sets.items()
        for x, y in zip(ranks, run.ranked[b].get(lib, {}).get(s, []), strict=False)
    ]
    return sum(1 for x, y in pairs if x == y) / len(pairs) if pairs else None


def tables(run: Run) -> dict[str, Any]:
    configs = [c for c in run.compare if c in run.ranked]
    languages: dict[str, list[str]] = {}
    for b in run.built:
        languages.setdefault(b.library.language, []).append(b.library.name)
    by_language: dict[str, Any] = {}
    overall: dict[str, Any] = {}
    per_library: dict[str, Any] = {}
    for config in configs:
        by_language[config] = {
            lang: {s: _pooled(run, config, libs, s).as_dict() for s in run.sets} for lang, libs in languages.items()
        }
        overall[config] = {}
        for s in run.sets:
            cells = [_pooled(run, config, libs, s) for libs in languages.values()]
            cells = [m for m in cells if m.n]
            overall[config][s] = {
                "languages": len(cells),
                "mrr10": round(sum(m.mrr for m in cells) / len(cells), 4) if cells else 0.0,
                "r1": round(sum(m.r1 for m in cells) / len(cells), 4) if cells else 0.0,
                "r10": round(sum(m.r10 for m in cells) / len(cells), 4) if cells else 0.0,
            }
        per_library[config] = {
            lib: {s: metrics(r).as_dict() for s, r in sets.items()} for lib, sets in run.ranked[config].items()
        }
    agreement = same_ranks(run, "product", "current")
    return {"by_language": by_language, "overall_macro": overall, "per_library": per_library,
            "product_current_agreement": agreement}  # fmt: skip


def render(run: Run) -> str:
    configs = [c for c in run.compare if c in run.ranked]
    width = 19
    head = f"{'':<8}{'set':<6}{'n':>5}  " + "".join(f"{c[: width - 1]:<{width}}" for c in configs)
    sub = f"{'':<19}  " + "".join(f"{'MRR10 R@1   R@10':<{width}}" for _ in configs)
    lines = [head, sub]
    languages: dict[str, list[str]] = {}
    for b in run.built:
        languages.setdefault(b.library.language, []).append(b.library.name)
    for lang, libs in languages.items():
        for s in run.sets:
            n = _pooled(run, configs[0], libs, s).n if configs else 0
            row = "".join(f"{_fmt(_pooled(run, c, libs, s)):<{width}}" for c in configs)
            lines.append(f"{lang:<8}{s:<6}{n:>5}  {row}")
    lines.append("")
    lines.append("per library (MRR@10):")
    lines.append(f"{'':<12}{'set':<6}{'n':>5}  " + "".join(f"{c[:11]:<12}" for c in configs))
    for b in run.built:
        lib = b.library.name
        for s in run.sets:
            ranks = run.ranked.get(configs[0], {}).get(lib, {}).get(s, []) if configs else []
            row = "".join(f"{metrics(run.ranked.get(c, {}).get(lib, {}).get(s, [])).mrr:<12.3f}" for c in configs)
            lines.append(f"{lib[:11]:<12}{s:<6}{len(ranks):>5}  {row}")
    agreement = same_ranks(run, "product", "current")
    if agreement is not None:
        lines.append("")
        lines.append(
            f"`current` (cached candidates, product weights) gives `product`'s rank on {agreement:.1%} of queries"
        )
    if run.lolo:
        lines.append("")
        lines.append("leave-one-library-out choice (weights tuned on all other libraries):")
        lines += [f"  {lib:<12} {w}" for lib, w in run.lolo.items()]
    return "\n".join(lines)
