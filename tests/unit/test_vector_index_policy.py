"""When a load drops the static vector index (server/indexer/vector_index.py)."""

from __future__ import annotations

from server.indexer import vector_index


def test_dropping_pays_for_big_loads_only() -> None:
    assert vector_index.worth_dropping(130_000, 0)  # a first index
    assert vector_index.worth_dropping(60_000, 100_000)  # a load of more than half the table
    assert not vector_index.worth_dropping(20_000, 100_000)  # cheaper to insert than to rebuild all
    assert not vector_index.worth_dropping(5_000, 0)  # too small to matter
    assert vector_index.worth_dropping(5_000, 0, min_chunks=1_000)
