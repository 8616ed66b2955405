"""Retrieval-quality benchmark over pinned libraries in Python, JavaScript/TypeScript, Rust and C.

Each library (bench/quality/suite.py) is downloaded with its registry's client (pip download,
npm pack), unpacked as it ships, sampled, copied with its doc comments blanked (line numbers
kept) and indexed into a project of its own through the product's pipeline, full text and
vectors. Four query sets per library (bench/quality/queries.py): `doc` (first sentence of a doc
comment → its definition), `ident` (a name as typed → its definition), `docs` (a docs-seeking
question made from a heading → that section), `tests` ("tests for NAME" → its tests). Gold rule:
bench/quality/model.py. Metrics: MRR@10, R@1, R@10 per language × set and per library; weights
are chosen leave-one-library-out. Everything engine-specific is in bench/quality/adapter.py.

    python -m bench.quality build [--languages python,js,rust,c] [--libraries django,zod] [--max-files 150]
    python -m bench.quality index [same selection]            # incremental: a second run is fast
    python -m bench.quality run --sets doc,ident,docs,tests --languages python,js,rust,c \\
        [--compare product,current,text,transformer,static,no-priors,rrf,lolo] \\
        [--config strong-ident=identifier:2] [--json PATH]

`product` ranks through CodeSearch.search itself; the named configurations of
bench/quality/adapter.py, --config entries and the `lolo` sweep re-rank each query's cached
candidates (gathered once per index state). Results go
to bench/results/quality-<time>.json (gitignored). Downloads, unpacked sources, trees, query sets and
candidate features are cached under ~/.cache/codebase-bench/quality/. The database is the
server's: CODEBASE_MCP_DATA_DIR (embedded PostgreSQL; use a directory of your own) or DATABASE_URL.
"""
