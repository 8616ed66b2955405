"""Hybrid code search: HNSW cosine similarity and PostgreSQL full text over code-aware tokens.

`CodeSearch.search` validates the request (`request`), picks the repositories (`repositories`),
embeds the query, plans the full-text side (`textplan`), gathers candidates from vectors, full
text and symbol names in one statement (`candidates`), blends and dedupes them (`ranking`) and
adds each hit's content and context lines (`context`). Measured quality and latency:
bench/README.md.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from server.db.cluster import Cluster, Conn
from server.db.registry import EmbedderMismatchError, Project, Registry
from server.embeddings import Embedder, EmbeddingError
from server.indexer.tokens import query_tokens
from server.projects import ProjectResolver
from server.search.candidates import CandidateQuery, Filters, fetch_candidates
from server.search.context import fetch_details, read_contexts
from server.search.models import ScoreParts, SearchHit, SearchMode, SearchResponse
from server.search.ranking import VECTOR_WEIGHT, Candidate, dedupe, fuse
from server.search.repositories import Repository, RepositoryCounts, select_repositories
from server.search.request import SearchError, SearchRequest, glob_to_regex, identifier_of
from server.search.textplan import (
    TEXT_MATCH_BUDGET,
    TEXT_ONLY_MATCH_BUDGET,
    TermStats,
    load_term_stats,
    plan_identifier,
    plan_text_query,
)

if TYPE_CHECKING:
    from server.app import App

STATS_TTL_SECONDS = 120.0
STATS_RETRY_SECONDS = 5.0


def _coverage_notice(mode: SearchMode, coverage: float, reason: str | None) -> str | None:
    if reason:
        return reason
    if mode == "text_only":
        return (
            "No embeddings stored yet: results come from full-text search only. Semantic ranking starts "
            "as soon as indexing has embedded chunks."
        )
    if coverage < 1.0:
        return (
            f"Embeddings are still being computed ({coverage:.0%} done): chunks without one are found "
            "by full text only."
        )
    return None


class CodeSearch:
    """Search over the projects of one registry; caches term statistics and repository counts per
    project database."""

    def __init__(
        self,
        *,
        cluster: Cluster,
        registry: Registry,
        resolver: ProjectResolver,
        embedder: Embedder,
        vector_weight: float = VECTOR_WEIGHT,
    ) -> None:
        self.cluster = cluster
        self.registry = registry
        self.resolver = resolver
        self.embedder = embedder
        self.vector_weight = vector_weight
        self._stats: dict[str, tuple[float, TermStats | None]] = {}
        self._counts = RepositoryCounts()
        self._embedder_checked: dict[str, float] = {}  # database -> when its embedder last matched ours

    @classmethod
    def from_app(cls, app: App, *, vector_weight: float = VECTOR_WEIGHT) -> CodeSearch:
        """Over a started `App`'s collaborators (a restarted App has new ones: build again)."""
        assert app.cluster is not None, "App.start() first"
        return cls(
            cluster=app.cluster,
            registry=app.registry,
            resolver=app.resolver,
            embedder=app.embedder,
            vector_weight=vector_weight,
        )

    async def term_stats(self, project: Project, conn: Conn) -> TermStats | None:
        now = time.monotonic()
        cached = self._stats.get(project.database_name)
        # Missing statistics (a table not analyzed yet) are looked up again soon.
        if cached is None or now - cached[0] > (STATS_TTL_SECONDS if cached[1] else STATS_RETRY_SECONDS):
            cached = (now, await load_term_stats(conn))
            self._stats[project.database_name] = cached
        return cached[1]

    async def embed_query(self, project: Project, query: str) -> tuple[npt.NDArray[np.float32] | None, str | None]:
        """The query's vector, or None with the reason why semantic ranking is off."""
        try:
            checked = self._embedder_checked.get(project.database_name)
            if checked is None or time.monotonic() - checked > STATS_TTL_SECONDS:
                await self.registry.check_embedder(project)
                self._embedder_checked[project.database_name] = time.monotonic()
            vectors = await self.embedder.embed([query])
        except EmbedderMismatchError as exc:
            return None, f"Full-text results only: {exc}"
        except EmbeddingError as exc:
            return None, f"Full-text results only: the query could not be embedded ({exc})"
        return np.asarray(vectors[0], dtype=np.float32), None

    async def search(self, request: SearchRequest, *, session_key: str | None = None) -> SearchResponse:
        started = time.perf_counter()
        req = request.validated()
        project = (await self.resolver.resolve(req.project_id, session_key, create=False)).project
        pool = await self.cluster.pool(project.database_name)
        async with pool.acquire() as conn:
            repositories = await self._counts.repositories(conn, project.database_name)
            if not repositories or not any(r.chunks for r in repositories):
                raise SearchError(
                    f"project {project.id!r} has no indexed code yet: index it first with the index_repository "
                    f"or start_indexing_background tool, or `codebase-mcp index PATH --project {project.id}`"
                )
            chosen = select_repositories(repositories, req.repository, project.id)
            total = sum(r.chunks for r in chosen)
            embedded = total - sum(r.unembedded for r in chosen)
            coverage = embedded / total if total else 0.0
            reason: str | None = None
            vector: npt.NDArray[np.float32] | None = None
            if embedded > 0:
                vector, reason = await self.embed_query(project, req.query)
            mode: SearchMode = "hybrid" if vector is not None else "text_only"
            identifier = identifier_of(req.query)
            stats = await self.term_stats(project, conn)
            budget = TEXT_MATCH_BUDGET if vector is not None else TEXT_ONLY_MATCH_BUDGET
            plan = plan_text_query(query_tokens(req.query), stats, budget)
            filters = Filters(
                repository_ids=[r.id for r in chosen] if len(chosen) < len(repositories) else None,
                language=req.language,
                path_regex=glob_to_regex(req.path_glob) if req.path_glob else None,
            )
            candidate_query = CandidateQuery(
                vector=vector, text=plan, identifier=identifier,
                identifier_query=plan_identifier(identifier, stats), filters=filters,
            )  # fmt: skip
            candidates = await fetch_candidates(conn, candidate_query)
            ranked = dedupe(fuse(candidates, self.vector_weight if vector is not None else 0.0), req.limit)
            hits = await self._hits(conn, ranked, {r.id: r for r in chosen}, req.context_lines)
        notice = _coverage_notice(mode, coverage, reason)
        if not hits and filters.any:
            notice = (notice + " " if notice else "") + "Nothing matched within the given filters."
        return SearchResponse(
            query=req.query, project_id=project.id, mode=mode, embedding_coverage=round(coverage, 4),
            notice=notice, identifier_query=identifier is not None, total_chunks=total, results=hits,
            took_ms=round((time.perf_counter() - started) * 1000, 2),
        )  # fmt: skip

    async def _hits(
        self,
        conn: Conn,
        ranked: Sequence[Candidate],
        repositories: Mapping[uuid.UUID, Repository],
        context_lines: int,
    ) -> list[SearchHit]:
        if not ranked:
            return []
        details = await fetch_details(conn, [c.id for c in ranked])
        ranked = [c for c in ranked if c.id in details]  # a file re-indexed in between
        contexts = await read_contexts(conn, ranked, details, repositories, context_lines)
        hits = []
        for c, ctx in zip(ranked, contexts, strict=True):
            repo = repositories[c.repository_id]
            hits.append(
                SearchHit(
                    repository_id=str(repo.id),
                    repository_name=repo.name,
                    file_path=c.rel_path,
                    absolute_path=str(Path(repo.root_path) / c.rel_path),
                    start_line=c.start_line,
                    end_line=c.end_line,
                    symbol=c.symbol,
                    kind=c.kind,
                    language=c.language,
                    score=round(c.score, 6),
                    scores=ScoreParts(
                        cosine=None if c.cosine is None else round(c.cosine, 6),
                        text=round(c.text, 6),
                        text_raw=round(c.text_raw, 6),
                        identifier=c.identifier,
                    ),
                    content=details[c.id]["content"],
                    context_before=ctx.before,
                    context_after=ctx.after,
                    context_source=ctx.source,
                )
            )
        return hits
