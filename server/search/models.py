"""Typed search results (they become the `search_code` tool's output schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from server.indexer.roles import Role
from server.search.intent import Intent
from server.search.request import Scope

SearchMode = Literal["hybrid", "text_only"]
ContextSource = Literal["file", "index", "none"]


class ScoreParts(BaseModel):
    """How a result's score was made: `score = w_t·cosine + w_s·static + w_x·text + w_n·name + identifier +
    prior` (hybrid mode; a missing cosine is stood in for by the static cosine) or `score = text + w_n·name +
    identifier + prior` (text_only mode)."""

    cosine: float | None = Field(
        description="Transformer cosine similarity to the query; None in text_only mode or when the chunk has "
        "no transformer vector yet and was not among the re-ranked candidates"
    )
    static: float | None = Field(description="Static-tier cosine similarity to the query (None without one)")
    static_scaled: float | None = Field(
        default=None,
        description="The static cosine mapped onto the transformer cosines' scale for this query "
        "(what the blend uses; the cosine stands in when it is None)",
    )
    text: float = Field(description="Full-text rank normalised by the best full-text rank among the candidates (0–1)")
    text_raw: float = Field(description="Σ idf(term)·ts_rank over code-aware tokens (PostgreSQL full text)")
    name: float = Field(
        default=0.0, description="Share of the query's words (weighted by rarity) found in this chunk's symbol (0–1)"
    )
    identifier: float = Field(description="Boost when the query names this chunk's symbol (0 when it does not)")
    prior: float = Field(description="Role prior: what the query seeks (code, docs, tests) against what the chunk is")


class SearchHit(BaseModel):
    repository_id: str
    repository_name: str
    file_path: str = Field(description="Path relative to the repository root (POSIX separators)")
    absolute_path: str
    start_line: int = Field(description="1-based, inclusive")
    end_line: int = Field(description="1-based, inclusive")
    symbol: str | None = Field(description="Qualified name such as `Parser.parse`, when the chunk defines one")
    kind: str = Field(description="function, method, class, module, section, window, ...")
    language: str
    role: Role = Field(description="code (implementation), test or docs: what the file is for")
    score: float
    scores: ScoreParts
    content: str
    context_before: list[str] = Field(description="Up to context_lines lines just above start_line")
    context_after: list[str] = Field(description="Up to context_lines lines just below end_line")
    context_source: ContextSource = Field(
        description="file: read from disk (unchanged since indexing); index: from neighbouring chunks "
        "(file changed or gone); none: no context asked for or none available"
    )
    indexed_at: datetime = Field(description="When this file's content was last stored in the index")


class PendingChanges(BaseModel):
    """Changes to the searched repositories that the index has been told about but not stored yet."""

    jobs: list[str] = Field(description="Ids of the queued or running jobs that will store them")
    paths: int = Field(description="Changed paths those jobs name (refreshes of a few files)")
    whole_repositories: list[str] = Field(
        description="Repositories being re-checked file by file (an index job still storing files, or a "
        "refresh of every file): any of their files may still change"
    )
    detail: str


class SearchResponse(BaseModel):
    query: str
    project_id: str
    mode: SearchMode = Field(description="hybrid: vectors + full text; text_only: no vectors stored yet")
    embedding_coverage: float = Field(description="Share of the searched chunks with a transformer vector (0–1)")
    static_coverage: float = Field(description="Share of the searched chunks with a static-tier vector (0–1)")
    intent: Intent = Field(description="What the query seeks, which orders roles: code, docs or test")
    scope: Scope = Field(description="The roles searched: all, code, tests or docs")
    reranked: int = Field(description="Candidates embedded by the transformer for this query (0 once all have one)")
    notice: str | None = Field(default=None, description="Set when results may be incomplete, and why")
    identifier_query: bool = Field(description="True when the query looked like an identifier (definitions first)")
    total_chunks: int = Field(description="Chunks in the searched repositories")
    results: list[SearchHit]
    pending_changes: PendingChanges | None = Field(
        default=None,
        description="None when the index holds every change it was told about; else what is still on its "
        "way (call refresh_index to wait for it)",
    )
    took_ms: float
