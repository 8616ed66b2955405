"""Search ranking on a small real repository: real PostgreSQL, real local embedder, real indexer."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.app import App
from server.db.registry import Project
from server.embeddings import Embedder
from server.embeddings.base import Vectors
from server.indexer.pipeline import index_repository
from server.search.engine import CodeSearch
from server.search.models import SearchHit, SearchResponse
from server.search.ranking import DEFAULT_WEIGHTS as W
from server.search.request import SearchError, SearchRequest
from server.search.rerank import RERANK_BATCH
from tests.repos import write_files

FILES: dict[str, str] = {
    "net/http_client.py": '''
        """A small HTTP client."""
        import random
        import time
        import urllib.request


        class HttpClient:
            def __init__(self, base_url: str, attempts: int = 5) -> None:
                self.base_url = base_url.rstrip("/")
                self.attempts = attempts

            def request_with_retry(self, method: str, path: str, body: bytes | None = None) -> bytes:
                # Failed calls (connection errors, 5xx) are tried again with exponential backoff and jitter.
                delay = 0.5
                for attempt in range(self.attempts):
                    try:
                        req = urllib.request.Request(self.base_url + path, data=body, method=method)
                        with urllib.request.urlopen(req, timeout=10) as resp:
                            return resp.read()
                    except OSError:
                        if attempt == self.attempts - 1:
                            raise
                        time.sleep(delay + random.random() * delay)
                        delay *= 2
                raise RuntimeError("unreachable")

            def get_json(self, path: str) -> object:
                import json
                return json.loads(self.request_with_retry("GET", path))
        ''',
    "config/loader.py": """
        import json
        import os
        from pathlib import Path

        DEFAULTS = {"port": 8080, "debug": False, "log_level": "info"}


        def parse_config(path: str) -> dict:
            # Read the JSON configuration file and merge it over the defaults.
            with open(path, encoding="utf-8") as fh:
                loaded = json.load(fh)
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: the top level must be an object")
            merged = dict(DEFAULTS)
            merged.update(loaded)
            return merged


        def apply_env_overrides(config: dict, prefix: str = "APP_") -> dict:
            for key, value in os.environ.items():
                if key.startswith(prefix):
                    config[key[len(prefix):].lower()] = value
            return config
        """,
    "data/csv_rows.py": """
        def split_csv_line(line: str, delimiter: str = ",") -> list[str]:
            # Split one line of comma separated values, honouring double quotes.
            fields, current, quoted = [], [], False
            for ch in line:
                if ch == '"':
                    quoted = not quoted
                elif ch == delimiter and not quoted:
                    fields.append("".join(current))
                    current = []
                else:
                    current.append(ch)
            fields.append("".join(current))
            return fields


        def read_csv_table(text: str) -> list[dict[str, str]]:
            lines = [l for l in text.splitlines() if l.strip()]
            header = split_csv_line(lines[0])
            return [dict(zip(header, split_csv_line(l))) for l in lines[1:]]
        """,
    "jobs/models.py": """
        from pydantic import BaseModel, field_validator


        class IndexingJobCreate(BaseModel):
            repo_path: str
            project_id: str | None = None
            force_reindex: bool = False

            @field_validator("repo_path")
            @classmethod
            def must_be_absolute(cls, value: str) -> str:
                if not value.startswith("/"):
                    raise ValueError("repo_path must be absolute")
                return value


        def create_job(payload: dict) -> IndexingJobCreate:
            job = IndexingJobCreate(**payload)
            return job
        """,
    "cache/lru.py": """
        from collections import OrderedDict


        class LRUCache:
            def __init__(self, capacity: int) -> None:
                self.capacity = capacity
                self.items: OrderedDict[str, object] = OrderedDict()

            def get(self, key: str) -> object | None:
                if key not in self.items:
                    return None
                self.items.move_to_end(key)
                return self.items[key]

            def put(self, key: str, value: object) -> None:
                # Insert and evict the least recently used entry when over capacity.
                self.items[key] = value
                self.items.move_to_end(key)
                while len(self.items) > self.capacity:
                    self.items.popitem(last=False)
        """,
    "text/slug.py": """
        import re
        import unicodedata


        def slugify(title: str) -> str:
            # Turn a title into a lower-case URL-friendly slug.
            normalized = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
            words = re.findall(r"[a-zA-Z0-9]+", normalized.lower())
            return "-".join(words)
        """,
    "misc/foo.py": """
        class Foo:
            def bar(self, items: list[int]) -> int:
                total = 0
                for item in items:
                    total += item * 2
                return total


        class Baz:
            def bar(self, name: str) -> str:
                greeting = "hello " + name
                return greeting.title()
        """,
    "tests/test_loader.py": """
        from config.loader import parse_config


        def test_parse_config_merges_defaults(tmp_path):
            path = tmp_path / "c.json"
            path.write_text('{"port": 1}')
            config = parse_config(str(path))
            assert config["port"] == 1
            assert parse_config(str(path))["debug"] is False
        """,
    "web/auth.js": """
        const crypto = require("crypto");

        function hashPassword(password, salt) {
          // Derive a password hash with PBKDF2 so stored credentials are not plain text.
          return crypto.pbkdf2Sync(password, salt, 100000, 64, "sha512").toString("hex");
        }

        function handleLogin(req, res, users) {
          const user = users.find((u) => u.email === req.body.email);
          if (!user || hashPassword(req.body.password, user.salt) !== user.hash) {
            res.status(401).json({ error: "invalid credentials" });
            return;
          }
          res.json({ ok: true });
        }

        module.exports = { hashPassword, handleLogin };
        """,
    "web/format.ts": """
        export interface UserProfile {
          id: number;
          displayName: string;
          email: string;
        }

        export function formatDuration(ms: number): string {
          // Human readable elapsed time such as 1h 02m 05s.
          const s = Math.floor(ms / 1000);
          const h = Math.floor(s / 3600);
          const m = Math.floor((s % 3600) / 60);
          return `${h}h ${String(m).padStart(2, "0")}m ${String(s % 60).padStart(2, "0")}s`;
        }
        """,
    "cmd/thumbs/main.go": """
        package main

        import (
        \t"image"
        \t"image/color"
        )

        // ResizeImage scales an image to the given width keeping its aspect ratio (nearest neighbour).
        func ResizeImage(src image.Image, width int) *image.RGBA {
        \tb := src.Bounds()
        \theight := b.Dy() * width / b.Dx()
        \tdst := image.NewRGBA(image.Rect(0, 0, width, height))
        \tfor y := 0; y < height; y++ {
        \t\tfor x := 0; x < width; x++ {
        \t\t\tdst.Set(x, y, src.At(x*b.Dx()/width, y*b.Dy()/height))
        \t\t}
        \t}
        \treturn dst
        }

        func main() {
        \t_ = color.Black
        }
        """,
    "src/distance.rs": """
        /// Edit distance between two strings: insertions, deletions and substitutions.
        pub fn levenshtein_distance(a: &str, b: &str) -> usize {
            let b_chars: Vec<char> = b.chars().collect();
            let mut prev: Vec<usize> = (0..=b_chars.len()).collect();
            for (i, ca) in a.chars().enumerate() {
                let mut cur = vec![i + 1];
                for (j, cb) in b_chars.iter().enumerate() {
                    let cost = if ca == *cb { 0 } else { 1 };
                    cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
                }
                prev = cur;
            }
            prev[b_chars.len()]
        }
        """,
    "db/migrate.py": """
        def apply_migrations(conn, migrations: list[tuple[str, str]]) -> int:
            # Run pending schema migrations in order inside one transaction.
            applied = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
            count = 0
            with conn:
                for name, sql in migrations:
                    if name in applied:
                        continue
                    conn.execute(sql)
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (?)", (name,))
                    count += 1
            return count
        """,
    "scripts/deploy.sh": """
        #!/usr/bin/env bash
        set -euo pipefail

        deploy_to_server() {
          # Copy the build to the remote host and restart the service.
          rsync -az dist/ "$1:/srv/app/"
          ssh "$1" sudo systemctl restart app
        }

        deploy_to_server "${DEPLOY_HOST:?}"
        """,
    "README.md": """
        # Sample service

        A toy service used to test code search.

        ## Configuration

        Settings live in a JSON file; see config/loader.py.
        """,
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return write_files(tmp_path / "sample-service", FILES)


async def _project(app: App, project_id: str) -> Project:
    return (await app.resolver.resolve(project_id, None, create=True)).project


async def search(app: App, query: str, project_id: str, **kw: Any) -> SearchResponse:
    return await CodeSearch.from_app(app).search(SearchRequest(query, project_id=project_id, **kw))


def names(hits: list[SearchHit]) -> list[str | None]:
    return [h.symbol for h in hits]


def assert_no_overlaps(hits: list[SearchHit]) -> None:
    for i, a in enumerate(hits):
        for b in hits[i + 1 :]:
            same_file = (a.repository_id, a.file_path) == (b.repository_id, b.file_path)
            assert not (same_file and a.start_line <= b.end_line and b.start_line <= a.end_line), (a, b)


async def test_hybrid_ranking_identifiers_and_natural_language(app: App, repo: Path, project_id: str) -> None:
    project = await _project(app, project_id)
    await app.index(project, repo)

    for identifier, path, symbol in [
        ("IndexingJobCreate", "jobs/models.py", "IndexingJobCreate"),
        ("parse_config", "config/loader.py", "parse_config"),
        ("Foo.bar", "misc/foo.py", "Foo.bar"),
        ("levenshtein_distance", "src/distance.rs", "levenshtein_distance"),
        ("ResizeImage", "cmd/thumbs/main.go", "ResizeImage"),
    ]:
        response = await search(app, identifier, project_id)
        assert response.identifier_query
        first = response.results[0]
        assert (first.file_path, first.symbol) == (path, symbol), (identifier, names(response.results))
        assert first.kind in {"class", "function", "method"}
        assert first.scores.identifier >= 1.0
    # the test that only calls parse_config comes after its definition
    response = await search(app, "parse_config", project_id)
    assert "tests/test_loader.py" in [h.file_path for h in response.results[1:]]
    # Foo.bar, not Baz.bar; a bare `bar` finds both methods first
    assert names((await search(app, "Foo.bar", project_id)).results)[0] == "Foo.bar"
    assert set(names((await search(app, "bar", project_id)).results)[:2]) == {"Foo.bar", "Baz.bar"}

    for query, want_path, want_symbol in [
        ("where do we retry failed HTTP requests", "net/http_client.py", "HttpClient.request_with_retry"),
        ("read a JSON configuration file", "config/loader.py", "parse_config"),
        ("split comma separated values", "data/csv_rows.py", "split_csv_line"),
        ("edit distance between two strings", "src/distance.rs", "levenshtein_distance"),
        ("evict the least recently used entry", "cache/lru.py", None),
        ("make a URL slug from a title", "text/slug.py", "slugify"),
        ("hash a password before storing it", "web/auth.js", "hashPassword"),
        ("scale a picture to a new width", "cmd/thumbs/main.go", "ResizeImage"),
    ]:
        response = await search(app, query, project_id, limit=5)
        assert response.mode == "hybrid" and response.embedding_coverage == 1.0 and response.notice is None
        assert not response.identifier_query
        top3 = [(h.file_path, h.symbol) for h in response.results[:3]]
        assert any(p == want_path and want_symbol in (None, s) for p, s in top3), (query, top3)
        assert_no_overlaps(response.results)
        for hit in response.results:
            parts = hit.scores
            assert parts.cosine is not None
            static = parts.static_scaled if parts.static_scaled is not None else parts.cosine
            blend = W.transformer * parts.cosine + W.static * static + W.text * parts.text + W.name * parts.name
            assert 0.0 <= parts.name <= 1.0
            assert hit.score == pytest.approx(blend + parts.identifier + parts.prior, abs=1e-5)

    hit = (await search(app, "where do we retry failed HTTP requests", project_id)).results[0]
    source = (repo / hit.file_path).read_text().split("\n")
    assert hit.absolute_path == str(repo.resolve() / hit.file_path)
    assert hit.repository_name == "sample-service"
    assert hit.content.split("\n") == source[hit.start_line - 1 : hit.end_line]
    assert hit.context_source == "file"
    assert hit.context_before == source[hit.start_line - 3 : hit.start_line - 1]
    assert hit.context_after == source[hit.end_line : hit.end_line + 2]


async def test_overlapping_chunks_are_returned_once(app: App, repo: Path, project_id: str) -> None:
    await app.index(await _project(app, project_id), repo)
    # The LRUCache outline and its methods overlap; whichever ranks best stands for that code.
    response = await search(app, "LRUCache get put capacity evict", project_id, limit=50)
    assert_no_overlaps(response.results)
    lru = [h.symbol for h in response.results if h.symbol and h.symbol.startswith("LRUCache")]
    # The class outline, or methods of it (which do not overlap one another), never both.
    assert lru and len(lru) == len(set(lru)), lru
    assert lru == ["LRUCache"] or "LRUCache" not in lru, lru


async def test_filters(app: App, repo: Path, tmp_path: Path, project_id: str) -> None:
    project = await _project(app, project_id)
    await app.index(project, repo)
    other = write_files(tmp_path / "other-tool", {"retry.py": '''
        def retry_forever(fn):
            # Call fn again and again until it stops raising.
            while True:
                try:
                    return fn()
                except Exception:
                    continue
        '''})  # fmt: skip
    other_id = (await app.index(project, other)).repository_id

    go = await search(app, "resize an image", project_id, language="go")
    assert go.results and {h.language for h in go.results} == {"go"}
    assert (await search(app, "resize an image", project_id, language="GO")).results == go.results

    web = await search(app, "format elapsed time", project_id, path_glob="web/**")
    assert web.results and all(h.file_path.startswith("web/") for h in web.results)
    assert web.results[0].symbol == "formatDuration"
    py = await search(app, "configuration", project_id, path_glob="*.py", limit=50)
    assert py.results and all(h.file_path.endswith(".py") for h in py.results)
    nested = await search(app, "parse", project_id, path_glob="config/*.py")
    assert {h.file_path for h in nested.results} == {"config/loader.py"}
    none = await search(app, "parse", project_id, path_glob="nothing/**")
    assert none.results == [] and none.notice and "filters" in none.notice

    everywhere = await search(app, "retry until it stops failing", project_id, limit=50)
    assert {h.repository_name for h in everywhere.results} == {"sample-service", "other-tool"}
    for wanted in ("other-tool", str(other_id)):
        only = await search(app, "retry until it stops failing", project_id, repository=wanted, limit=50)
        assert only.results and {h.repository_id for h in only.results} == {str(other_id)}
        assert only.total_chunks < everywhere.total_chunks
    with pytest.raises(SearchError, match=r"unknown repository 'nope'.*sample-service"):
        await search(app, "retry", project_id, repository="nope")

    combined = await search(app, "retry", project_id, repository="sample-service", language="python",
                            path_glob="net/*.py")  # fmt: skip
    assert [h.symbol for h in combined.results] == ["HttpClient.request_with_retry"] or all(
        h.file_path == "net/http_client.py" for h in combined.results
    )


class CountingEmbedder:
    """The real embedder, counting calls (to prove the query is not embedded in text-only mode)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.calls: list[int] = []

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    async def load(self) -> None:
        await self.inner.load()

    async def embed(self, texts: Any, *, urgent: bool = False) -> Vectors:
        self.calls.append(len(texts))
        return await self.inner.embed(texts, urgent=urgent)

    async def aclose(self) -> None:
        pass


@pytest.fixture
def counting(app: App) -> Iterator[CountingEmbedder]:
    spy = CountingEmbedder(app.embedder)
    original = app.embedder
    app.embedder = spy
    yield spy
    app.embedder = original


async def test_text_only_before_embeddings(app: App, repo: Path, project_id: str, counting: CountingEmbedder) -> None:
    project = await _project(app, project_id)
    pool = await app.cluster.pool(project.database_name)
    await index_repository(repo, "sample-service", pool, embedder=None)

    response = await search(app, "retry failed requests with backoff", project_id, limit=5)
    assert response.mode == "text_only" and response.embedding_coverage == 0.0
    assert response.notice and "full-text" in response.notice
    assert counting.calls == []  # the query was not embedded
    assert response.results[0].symbol == "HttpClient.request_with_retry"
    assert all(h.scores.cosine is None for h in response.results)
    assert all(
        h.score == pytest.approx(h.scores.text + W.name * h.scores.name + h.scores.identifier, abs=1e-5)
        for h in response.results
    )
    ident = await search(app, "IndexingJobCreate", project_id)
    assert (ident.results[0].symbol, ident.results[0].kind) == ("IndexingJobCreate", "class")

    # Half embedded: hybrid, and chunks without vectors are still found by full text.
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, content FROM chunks WHERE symbol <> 'slugify' ORDER BY id")
        vectors = await app.embedder.embed([r["content"] for r in rows])
        await conn.executemany(
            "UPDATE chunks SET embedding = $2 WHERE id = $1",
            [(r["id"], np.asarray(v, dtype=np.float32)) for r, v in zip(rows, vectors, strict=True)],
        )
    counting.calls.clear()
    unhurried = CodeSearch.from_app(app, rerank_budget=None)  # however long the re-rank takes on a busy machine
    partial = await unhurried.search(SearchRequest("slugify title", project_id=project_id))
    assert partial.mode == "hybrid" and 0.0 < partial.embedding_coverage < 1.0
    assert partial.notice and "still being computed" in partial.notice
    # The query, then the re-rank: slugify, found by full text without a vector, is embedded now and kept.
    assert counting.calls == [1, 1] and partial.reranked == 1
    slug = [h for h in partial.results if h.symbol == "slugify"]
    assert slug and slug[0].scores.cosine is not None and partial.results[0].symbol == "slugify"
    assert await pool.fetchval("SELECT count(*) FROM chunks WHERE symbol = 'slugify' AND embedding IS NULL") == 0
    again = await unhurried.search(SearchRequest("slugify title", project_id=project_id))
    assert again.reranked == 0 and counting.calls == [1, 1, 1]  # only the query this time


class SlowEmbedder(CountingEmbedder):
    """Takes a second for anything but a one-text batch (the query)."""

    async def embed(self, texts: Any, *, urgent: bool = False) -> Vectors:
        if len(texts) > 1:
            await asyncio.sleep(1.0)
        return await super().embed(texts, urgent=urgent)


async def test_a_slow_rerank_stops_at_its_budget(app: App, repo: Path, project_id: str) -> None:
    project = await _project(app, project_id)
    pool = await app.cluster.pool(project.database_name)
    await index_repository(repo, "sample-service", pool, embedder=None)
    async with pool.acquire() as conn:  # a few chunks have transformer vectors: the rest are being filled in
        rows = await conn.fetch("SELECT id, content FROM chunks WHERE kind = 'class' ORDER BY id")
        vectors = await app.embedder.embed([r["content"] for r in rows])
        await conn.executemany(
            "UPDATE chunks SET embedding = $2 WHERE id = $1",
            [(r["id"], np.asarray(v, dtype=np.float32)) for r, v in zip(rows, vectors, strict=True)],
        )
    missing = await pool.fetchval("SELECT count(*) FROM chunks WHERE embedding IS NULL")
    slow = SlowEmbedder(app.embedder)
    engine = CodeSearch(cluster=app.cluster, registry=app.registry, resolver=app.resolver, embedder=slow,
                        static=app.static_embedder, rerank_budget=0.05)  # fmt: skip
    response = await engine.search(SearchRequest("retry failed requests with backoff", project_id=project_id))
    # One batch (the best missing candidates) is embedded, then the budget is spent: the rest keep static scores.
    assert response.mode == "hybrid" and response.reranked == RERANK_BATCH and slow.calls == [1, RERANK_BATCH]
    assert any(h.scores.cosine is None for h in response.results)
    assert await pool.fetchval("SELECT count(*) FROM chunks WHERE embedding IS NULL") == missing - RERANK_BATCH


async def test_deleted_and_changed_files(app: App, repo: Path, project_id: str) -> None:
    project = await _project(app, project_id)
    await app.index(project, repo)
    (repo / "text" / "slug.py").unlink()
    await app.index(project, repo)
    for query in ("slugify", "make a URL slug from a title"):
        response = await search(app, query, project_id, limit=50)
        assert all(h.file_path != "text/slug.py" for h in response.results)
        assert all(h.symbol != "slugify" for h in response.results)

    # Changed on disk since indexing: context comes from the index, still for the indexed lines.
    loader = repo / "config" / "loader.py"
    original = loader.read_text().split("\n")
    loader.write_text("# a new first line shifts everything\n" + "\n".join(original))
    hit = (await search(app, "parse_config", project_id, context_lines=3)).results[0]
    assert hit.symbol == "parse_config" and hit.context_source == "index"
    assert hit.context_after == original[hit.end_line : hit.end_line + 3]

    # Gone from disk and not re-indexed yet: no crash, context from the index or none.
    os.remove(repo / "cache" / "lru.py")
    response = await search(app, "LRUCache", project_id, context_lines=2)
    assert response.results[0].symbol == "LRUCache"
    assert response.results[0].context_source in {"index", "none"}
    no_context = await search(app, "LRUCache", project_id, context_lines=0)
    assert no_context.results[0].context_before == [] and no_context.results[0].context_source == "none"


async def test_unindexed_project_is_a_clear_error(app: App, project_id: str) -> None:
    await _project(app, project_id)  # exists, nothing indexed
    with pytest.raises(SearchError, match="index it first"):
        await search(app, "anything", project_id)


async def test_project_of_another_embedder_is_searched_by_full_text(
    app: App, repo: Path, project_id: str, counting: CountingEmbedder
) -> None:
    project = await _project(app, project_id)
    await app.index(project, repo)
    pool = await app.cluster.pool(project.database_name)
    await pool.execute(
        """UPDATE project_config SET value = '{"name": "ollama:nomic-embed-text", "dimension": 768}'::jsonb
           WHERE key = 'embedder'"""
    )
    counting.calls.clear()
    response = await search(app, "retry failed requests with backoff", project_id)
    # Its transformer vectors cannot be compared with ours: the query is not embedded by the transformer,
    # nothing is re-ranked, and the static tier (one local model for every project) and full text rank.
    assert response.mode == "hybrid" and response.embedding_coverage == 1.0 and response.static_coverage == 1.0
    assert response.notice and "ollama:nomic-embed-text" in response.notice
    assert counting.calls == [] and response.reranked == 0
    assert all(h.scores.cosine is None and h.scores.static is not None for h in response.results)
    assert response.results[0].symbol == "HttpClient.request_with_retry"
