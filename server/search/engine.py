"""Hybrid code search: two vector tiers, PostgreSQL full text over code-aware tokens, a re-rank.

`CodeSearch.search` validates the request (`request`), picks the repositories (`repositories`),
embeds the query twice (the static tier and the transformer), plans the full-text side
(`textplan`), gathers candidates from both vector tiers, full text and symbol names in one
statement (`candidates`), blends them with role priors for what the query seeks (`ranking`,
`intent`), re-ranks the best with the transformer, embedding those still without a transformer
vector (`rerank`), dedupes, and adds each hit's content and context lines (`context`). Measured
quality and latency: bench/README.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import numpy as np
import numpy.typing as npt

from server.db.cluster import Cluster, Conn
from server.db.registry import EmbedderMismatchError, Project, Registry
from server.embeddings import Embedder, EmbeddingError
from server.embeddings.base import Vectors
from server.embeddings.query_adapter import QueryAdapter
from server.indexer.tokens import query_tokens
from server.projects import ProjectResolver
from server.search.candidates import CandidateQuery, Filters, fetch_candidates
from server.search.context import fetch_details, read_contexts
from server.search.freshness import pending_changes
from server.search.intent import Intent, intent_of, lexical_query
from server.search.models import ScoreParts, SearchHit, SearchMode, SearchResponse
from server.search.names import set_coverage
from server.search.ranking import DEFAULT_WEIGHTS, Candidate, Weights, dedupe, fuse
from server.search.repositories import Repository, RepositoryCounts, select_repositories
from server.search.request import Scope, SearchError, SearchRequest, glob_to_regex, identifier_of, scope_roles
from server.search.rerank import RERANK_BUDGET_SECONDS, RERANK_CANDIDATES, Reranker
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

log = logging.getLogger(__name__)

STATS_TTL_SECONDS = 120.0
STATS_RETRY_SECONDS = 5.0


class StaticTier(Protocol):
    """The static embedder as search uses it (server/embeddings/static.py)."""

    def embed(self, texts: Sequence[str]) -> Vectors: ...


def _coverage_notice(mode: SearchMode, transformer: float, static: float, reason: str | None) -> str | None:
    if reason:
        return reason
    if mode == "text_only":
        return (
            "No vectors stored yet: results come from full-text search only. Semantic ranking starts "
            "as soon as indexing has stored chunks with vectors."
        )
    if static < 1.0 and transformer < 1.0:
        return (
            f"Vectors are still being computed ({max(static, transformer):.0%} of chunks have one): chunks "
            "without one are found by full text only."
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
        static: StaticTier | None = None,
        weights: Weights = DEFAULT_WEIGHTS,
        rerank: int = RERANK_CANDIDATES,
        rerank_budget: float | None = RERANK_BUDGET_SECONDS,
        query_adapter: QueryAdapter | None = None,
    ) -> None:
        self.cluster = cluster
        self.registry = registry
        self.resolver = resolver
        self.embedder = embedder
        self.static = static
        self.query_adapter = query_adapter
        self.weights = weights
        self.rerank = rerank
        self.reranker = Reranker(embedder, rerank_budget)
        self._stats: dict[str, tuple[float, TermStats | None]] = {}
        self._counts = RepositoryCounts()
        self._embedder_checked: dict[str, float] = {}  # database -> when its embedder last matched ours

    @classmethod
    def from_app(
        cls, app: App, *, weights: Weights = DEFAULT_WEIGHTS, rerank_budget: float | None = RERANK_BUDGET_SECONDS
    ) -> CodeSearch:
        """Over a started `App`'s collaborators (a restarted App has new ones: build again)."""
        assert app.cluster is not None, "App.start() first"
        return cls(
            cluster=app.cluster,
            registry=app.registry,
            resolver=app.resolver,
            embedder=app.embedder,
            static=app.static_embedder,
            weights=weights,
            rerank_budget=rerank_budget,
            query_adapter=app.query_adapter,
        )

    async def term_stats(self, project: Project, conn: Conn) -> TermStats | None:
        now = time.monotonic()
        cached = self._stats.get(project.database_name)
        # Missing statistics (a table not analyzed yet) are looked up again soon.
        if cached is None or now - cached[0] > (STATS_TTL_SECONDS if cached[1] else STATS_RETRY_SECONDS):
            cached = (now, await load_term_stats(conn))
            self._stats[project.database_name] = cached
        return cached[1]

    async def embed_query(
        self, project: Project, query: str, intent: Intent = "code"
    ) -> tuple[npt.NDArray[np.float32] | None, str | None]:
        """The query's transformer vector, or None with the reason why it is not used."""
        try:
            checked = self._embedder_checked.get(project.database_name)
            if checked is None or time.monotonic() - checked > STATS_TTL_SECONDS:
                await self.registry.check_embedder(project)
                self._embedder_checked[project.database_name] = time.monotonic()
            vectors = await self.query_vectors([query], [intent], urgent=True)
        except EmbedderMismatchError as exc:
            return None, f"Transformer ranking is off: {exc}"
        except EmbeddingError as exc:
            return None, f"Transformer ranking is off: the query could not be embedded ({exc})"
        return np.asarray(vectors[0], dtype=np.float32), None

    async def query_vectors(
        self, queries: Sequence[str], intents: Sequence[Intent], *, urgent: bool = False
    ) -> Vectors:
        """Transformer vectors of queries; code-seeking ones go through the query adapter when there is
        one (it was learned from doc comments → code: docs- and test-seeking queries keep theirs)."""
        vectors = await self.embedder.embed(queries, urgent=urgent)
        rows = [i for i, intent in enumerate(intents) if intent == "code"]
        if self.query_adapter is None or not rows:
            return vectors
        try:
            adapted = np.array(vectors, dtype=np.float32)
            adapted[rows] = self.query_adapter.apply(adapted[rows])
            return adapted
        except EmbeddingError as exc:
            log.warning("Query adapter off: %s", exc)
            self.query_adapter = None
            return vectors

    def embed_static(self, query: str) -> npt.NDArray[np.float32] | None:
        if self.static is None:
            return None
        return np.asarray(self.static.embed([query])[0], dtype=np.float32)

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
            transformer = (total - sum(r.unembedded for r in chosen)) / total if total else 0.0
            static = (total - sum(r.unstatic for r in chosen)) / total if total else 0.0
            static_vector = await asyncio.to_thread(self.embed_static, req.query) if static > 0 else None
            identifier = identifier_of(req.query)
            intent = intent_of(req.query, identifier=identifier is not None)
            vector: npt.NDArray[np.float32] | None = None
            reason: str | None = None
            if transformer > 0 or static_vector is not None:  # else nothing to compare it with, nor re-rank
                vector, reason = await self.embed_query(project, req.query, intent)
            semantic = (vector is not None and transformer > 0) or static_vector is not None
            mode: SearchMode = "hybrid" if semantic else "text_only"
            stats = await self.term_stats(project, conn)
            budget = TEXT_MATCH_BUDGET if semantic else TEXT_ONLY_MATCH_BUDGET
            plan = plan_text_query(query_tokens(lexical_query(req.query, intent)), stats, budget)
            scope = cast(Scope, req.scope)
            filters = Filters(
                repository_ids=[r.id for r in chosen] if len(chosen) < len(repositories) else None,
                language=req.language,
                path_regex=glob_to_regex(req.path_glob) if req.path_glob else None,
                roles=scope_roles(scope),
            )
            candidate_query = CandidateQuery(
                vector=vector if transformer > 0 else None, static_vector=static_vector,
                static_search=transformer < 1.0, text=plan, identifier=identifier,
                identifier_query=plan_identifier(identifier, stats), filters=filters,
            )  # fmt: skip
            candidates = await fetch_candidates(conn, candidate_query)
            set_coverage(candidates, plan.term_weights() if plan else {})
            ranked = fuse(candidates, self.weights, intent, semantic=semantic)
            reranked = 0
            if vector is not None and semantic and self.rerank > 0:
                reranked = await self.reranker.embed_missing(conn, ranked[: self.rerank], vector)
                if reranked:
                    ranked = fuse(ranked, self.weights, intent)
            hits = await self._hits(conn, dedupe(ranked, req.limit), {r.id: r for r in chosen}, req.context_lines)
            pending = await pending_changes(conn, [r.root_path for r in chosen])
        notice = _coverage_notice(mode, transformer, static, reason)
        if not hits and filters.any:
            notice = (notice + " " if notice else "") + "Nothing matched within the given filters."
        return SearchResponse(
            query=req.query, project_id=project.id, mode=mode, embedding_coverage=round(transformer, 4),
            static_coverage=round(static, 4), intent=intent, scope=scope, reranked=reranked, notice=notice,
            identifier_query=identifier is not None, total_chunks=total, results=hits, pending_changes=pending,
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
                    role=c.role,
                    score=round(c.score, 6),
                    scores=ScoreParts(
                        cosine=None if c.cosine is None else round(c.cosine, 6),
                        static=None if c.static_cosine is None else round(c.static_cosine, 6),
                        static_scaled=None if c.static is None else round(c.static, 6),
                        text=round(c.text, 6),
                        text_raw=round(c.text_raw, 6),
                        name=round(c.name, 6),
                        identifier=c.identifier,
                        prior=c.prior,
                    ),
                    content=details[c.id]["content"],
                    context_before=ctx.before,
                    context_after=ctx.after,
                    context_source=ctx.source,
                    indexed_at=details[c.id]["indexed_at"],
                )
            )
        return hits
