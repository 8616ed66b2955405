"""Command line of the quality suite (see bench/quality/__init__.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout, uninstalled

from bench import quality
from bench.quality import adapter, build, report, runner, suite
from bench.quality.model import QUERY_SETS, QuerySet
from server.settings import Settings

DEFAULT_COMPARE = ["product", "current", "text", "transformer", "static", "no-priors", "rrf", "lolo"]


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.quality", description=quality.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--data-dir", help="embedded PostgreSQL data dir (default: CODEBASE_MCP_DATA_DIR)")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("build", "index", "run"):
        c = sub.add_parser(name)
        c.add_argument("--languages", type=_csv, help=f"of {','.join(suite.LANGUAGES)} (default: all)")
        c.add_argument("--libraries", type=_csv, help="library names (default: all of the languages)")
        c.add_argument("--max-files", type=int, default=150, help="files per library; 0: every file")
        c.add_argument("--seed", type=int, default=7)
        c.add_argument("--cap", type=int, default=200, help="queries per set and library")
        if name == "run":
            c.add_argument("--sets", type=_csv, default=list(QUERY_SETS), help=f"of {','.join(QUERY_SETS)}")
            c.add_argument("--compare", type=_csv, default=DEFAULT_COMPARE,
                           help="configurations side by side: product (CodeSearch.search), lolo (the sweep chosen "
                           f"leave-one-library-out), {', '.join(adapter.NAMED)} and --config names")  # fmt: skip
            c.add_argument("--config", action="append", default=[], help="NAME=key:value,... re-rank weights "
                           f"(keys: {', '.join(adapter.PRODUCT_WEIGHTS)}, rrf), compared too")  # fmt: skip
            c.add_argument("--json", help="results file (default: bench/results/quality-<time>.json)")
    return p


async def _index(settings: Settings, built: list[build.Built]) -> None:
    async with adapter.Engine(settings, suite.CACHE / "features") as engine:
        await runner.index_all(engine, built, print)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = Settings(data_dir=Path(args.data_dir)) if args.data_dir else Settings()
    libs = suite.select(args.languages, args.libraries)
    started = time.monotonic()
    built = runner.build_all(libs, args.max_files or None, args.seed, args.cap, print)
    for b in built:
        print(f"{b.library.key:<20} {b.info['files_indexed']:>5} files  queries {build.counts(b)}", flush=True)
    if args.command == "index":
        asyncio.run(_index(settings, built))
    elif args.command == "run":
        bad = sorted(set(args.sets) - set(QUERY_SETS))
        custom = dict(runner.parse_config(spec) for spec in args.config)
        unknown = sorted(set(args.compare) - {"product", "lolo", *adapter.NAMED, *custom})
        if bad or unknown:
            raise SystemExit(f"unknown query set or configuration: {', '.join(bad + unknown)}")
        compare = list(dict.fromkeys([*args.compare, *custom]))
        load = runner.load_average()
        run = asyncio.run(runner.evaluate(settings, built, cast(list[QuerySet], args.sets), compare, custom))
        tables = report.tables(run)
        print()
        print(report.render(run))
        out = runner.results_path(args.json)
        meta = {k: v for k, v in vars(args).items() if k != "config"} | {"config": args.config,
                "load_average_start": load, "load_average_end": runner.load_average()}  # fmt: skip
        out.write_text(runner.to_json(run, meta, tables))
        print(f"\n{time.monotonic() - started:.0f} s in all (index {run.seconds.get('index', 0):.0f} s); "
              f"load average {load:.1f} → {runner.load_average():.1f}; wrote {out}")  # fmt: skip


if __name__ == "__main__":
    main()
