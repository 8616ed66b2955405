"""Query-plan regression: under the planner settings search uses, the candidate SQL reaches chunks only
through their indexes (HNSW for both vector tiers, GIN for full text), never by a sequential scan."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.app import App
from server.embeddings import Embedder
from server.search.candidates import CandidateQuery, Filters, build_candidate_sql, planner_settings
from server.search.textplan import load_term_stats, plan_identifier, plan_text_query
from tests.fakes import FakeEmbedder
from tests.repos import make_python_repo


@pytest.fixture
def app_embedder(fake_embedder: FakeEmbedder) -> Embedder:
    return fake_embedder


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _unit(seed: int, dim: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


async def _plan(app: App, tmp_path: Path, filters: Filters) -> list[dict[str, Any]]:
    repo = make_python_repo(tmp_path / "repo", 250)
    project = (await app.resolver.resolve("plans", None, create=True)).project
    await app.index(project, repo)
    pool = await app.pool(project)
    async with pool.acquire() as conn:
        await conn.execute("ANALYZE chunks")
        stats = await load_term_stats(conn)
        text = plan_text_query(["load", "settings", "json"], stats)
        query = CandidateQuery(
            vector=_unit(1, app.embedder.dimension),
            static_vector=_unit(2, 384),
            text=text,
            identifier="Service7.run",
            identifier_query=plan_identifier("Service7.run", stats),
            filters=filters,
        )
        sql, args = build_candidate_sql(query)
        async with conn.transaction(readonly=True):
            await conn.execute("; ".join(planner_settings(query)))
            explained = await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args)
    return list(_nodes(json.loads(explained)[0]["Plan"]))


def _chunk_access(nodes: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(n["Node Type"], n.get("Index Name")) for n in nodes if n.get("Relation Name") == "chunks"]


async def test_search_reaches_chunks_through_hnsw_and_gin_indexes(app: App, tmp_path: Path) -> None:
    nodes = await _plan(app, tmp_path, Filters())
    access = _chunk_access(nodes)
    indexes = {name for _, name in access}
    assert "chunks_embedding_hnsw_idx" in indexes, access  # transformer neighbours
    assert "chunks_static_hnsw_idx" in indexes, access  # static-tier neighbours
    bitmap = {n.get("Index Name") for n in nodes if n["Node Type"] == "Bitmap Index Scan"}
    assert "chunks_tsv_idx" in bitmap, access  # full-text and identifier matches
    assert all(kind != "Seq Scan" for kind, _ in access), access


async def test_filtered_search_keeps_the_vector_indexes(app: App, tmp_path: Path) -> None:
    nodes = await _plan(app, tmp_path, Filters(language="python", roles=("code",)))
    access = _chunk_access(nodes)
    indexes = {name for _, name in access}
    assert {"chunks_embedding_hnsw_idx", "chunks_static_hnsw_idx"} <= indexes, access
    assert all(kind != "Seq Scan" for kind, _ in access), access
