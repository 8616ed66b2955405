"""The pretty CLI view of search results (rendered by rich, no database)."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from server.search.cli import MAX_SHOWN_LINES, print_response
from server.search.models import PendingChanges, ScoreParts, SearchHit, SearchResponse


def hit(content: str, **kw: object) -> SearchHit:
    base: dict[str, object] = dict(
        repository_id="r1", repository_name="toolbox", file_path="app/retry.py",
        absolute_path="/src/toolbox/app/retry.py", start_line=10, end_line=10 + content.count("\n"),
        symbol="call_with_backoff", kind="function", language="python", role="code", score=0.8123,
        scores=ScoreParts(cosine=0.75, static=None, text=0.5, text_raw=3.2, identifier=0.0, prior=0.0),
        content=content,
        context_before=["import time", ""], context_after=[""], context_source="file",
        indexed_at=datetime(2026, 1, 2, tzinfo=UTC),
    )  # fmt: skip
    base.update(kw)
    return SearchHit.model_validate(base)


def render(response: SearchResponse) -> str:
    console = Console(record=True, width=120, color_system=None)
    print_response(response, console)
    return console.export_text()


def response(*hits: SearchHit, **kw: object) -> SearchResponse:
    base: dict[str, object] = dict(
        query="retry with backoff", project_id="demo", mode="hybrid", embedding_coverage=1.0, static_coverage=1.0,
        intent="code", scope="all", reranked=0, notice=None, identifier_query=False, total_chunks=42,
        results=list(hits), took_ms=12.5,
    )  # fmt: skip
    base.update(kw)
    return SearchResponse.model_validate(base)


def test_shows_location_symbol_scores_and_numbered_code_with_context() -> None:
    text = render(response(hit("def call_with_backoff(fn):\n    return fn()")))
    assert "1 result for retry with backoff in project demo (hybrid, 100% embedded" in text
    assert "1. app/retry.py:10-11  call_with_backoff  function, python" in text
    assert "score 0.812 · cosine 0.750 · text 0.500 · toolbox" in text
    assert "function, python  " not in text.replace("python\n", "")  # no role shown for code
    assert "8 import time" in text  # context above, numbered from start_line - 2
    assert "10 def call_with_backoff(fn):" in text
    assert "11     return fn()" in text


def test_long_chunks_are_cut_and_text_only_mode_is_announced() -> None:
    body = "\n".join(f"x{i} = {i}" for i in range(MAX_SHOWN_LINES + 7))
    text = render(
        response(
            hit(body, scores=ScoreParts(cosine=None, static=None, text=1.0, text_raw=2.0, identifier=1.85, prior=0.0)),
            mode="text_only",
            embedding_coverage=0.0,
            notice="No embeddings stored yet",
        )
    )
    assert "full text only, 0% embedded" in text and "No embeddings stored yet" in text
    assert f"x{MAX_SHOWN_LINES - 1} = " in text and f"x{MAX_SHOWN_LINES} = " not in text
    assert "… 7 more lines" in text
    assert "name match +1.85" in text and "cosine" not in text


def test_pending_changes_are_announced() -> None:
    pending = PendingChanges(jobs=["j1"], paths=2, whole_repositories=[], detail="1 jobs queued (2 changed paths)")
    text = render(response(hit("x = 1"), pending_changes=pending))
    assert "Changes still being indexed: 1 jobs queued (2 changed paths)" in text
    assert "Changes still being indexed" not in render(response(hit("x = 1")))
