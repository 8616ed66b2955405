"""Typed search results (they become the `search_code` tool's output schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

SearchMode = Literal["hybrid", "text_only"]
ContextSource = Literal["file", "index", "none"]


class ScoreParts(BaseModel):
    """How a result's score was made: `score = 0.85·cosine + 0.15·text + identifier` (hybrid mode) or
    `score = text + identifier` (text_only mode)."""

    cosine: float | None = Field(
        description="Cosine similarity to the query; None in text_only mode or while the chunk has no vector "
        "yet (the score then uses a stand-in between the weakest and best candidates' cosines, by text rank)"
    )
    text: float = Field(description="Full-text rank normalised by the best full-text rank among the candidates (0–1)")
    text_raw: float = Field(description="Σ idf(term)·ts_rank over code-aware tokens (PostgreSQL full text)")
    identifier: float = Field(description="Boost when the query names this chunk's symbol (0 when it does not)")


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
    score: float
    scores: ScoreParts
    content: str
    context_before: list[str] = Field(description="Up to context_lines lines just above start_line")
    context_after: list[str] = Field(description="Up to context_lines lines just below end_line")
    context_source: ContextSource = Field(
        description="file: read from disk (unchanged since indexing); index: from neighbouring chunks "
        "(file changed or gone); none: no context asked for or none available"
    )


class SearchResponse(BaseModel):
    query: str
    project_id: str
    mode: SearchMode = Field(description="hybrid: vectors + full text; text_only: no vectors stored yet")
    embedding_coverage: float = Field(description="Share of the searched chunks that have a vector (0–1)")
    notice: str | None = Field(default=None, description="Set when results may be incomplete, and why")
    identifier_query: bool = Field(description="True when the query looked like an identifier (definitions first)")
    total_chunks: int = Field(description="Chunks in the searched repositories")
    results: list[SearchHit]
    took_ms: float
