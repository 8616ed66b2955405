"""Chunking workers import `server.indexer.prepare` and nothing heavier than they use, run the
tokenizer on their own thread, and stop when the last run using them is done."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from server.indexer.prepare import acquire_executor, executor, release_executor, shutdown_executor

pytestmark = pytest.mark.unit

HEAVY = ("onnxruntime", "onnx", "asyncpg", "pgvector", "httpx", "pydantic", "sqlalchemy", "fastmcp")


def _modules_after(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out))


def test_prepare_module_leaves_model_runtimes_and_database_drivers_out() -> None:
    loaded = _modules_after("import server.indexer.prepare")
    assert {"numpy", "tokenizers", "tree_sitter"} <= loaded  # what a worker does use
    assert sorted(m for m in HEAVY if m in loaded) == []


def test_every_process_start_leaves_alembic_and_http_clients_out() -> None:
    """`server.app` (what every command, server and worker imports) with the local model's embedder built."""
    loaded = _modules_after(
        "import server.app, server.cli\nfrom server.embeddings import create_embedder\ncreate_embedder('local')"
    )
    assert "onnxruntime" in loaded
    assert sorted(m for m in ("alembic", "sqlalchemy", "httpx", "fastmcp") if m in loaded) == []


def test_embeddings_package_still_offers_every_provider_on_first_use() -> None:
    loaded = _modules_after(
        "import server.embeddings as e\nassert e.LocalEmbedder.__name__ == 'LocalEmbedder'\n"
        "assert e.create_embedder is e.factory.create_embedder"
    )
    assert "onnxruntime" in loaded


def test_unknown_name_is_an_attribute_error() -> None:
    import server.embeddings as embeddings

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = embeddings.Nope


def test_workers_keep_the_tokenizer_single_threaded() -> None:
    try:
        pool = executor()
        assert pool.submit(os.getenv, "TOKENIZERS_PARALLELISM").result(timeout=60) == "false"
    finally:
        shutdown_executor()


def test_the_last_run_out_stops_the_workers() -> None:
    try:
        first = acquire_executor()
        second = acquire_executor()  # another run meanwhile: the same pool
        assert second is first
        pid = first.submit(os.getpid).result(timeout=60)
        release_executor()
        assert executor() is first  # one run still uses it
        os.kill(pid, 0)  # its worker is alive
        assert first.submit(abs, -1).result(timeout=60) == 1
        release_executor()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the worker has exited (shutdown waited for it)
        again = acquire_executor()
        assert again is not first and again.submit(os.getpid).result(timeout=60) != pid
        release_executor()
    finally:
        shutdown_executor()
