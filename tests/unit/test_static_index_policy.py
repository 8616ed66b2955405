"""When a load drops the static vector index (server/indexer/static_index.py)."""

from __future__ import annotations

from server.indexer import static_index


def test_dropping_pays_for_big_loads_only() -> None:
    assert static_index.worth_dropping(130_000, 0)  # a first index
    assert static_index.worth_dropping(60_000, 100_000)  # a load of more than half the table
    assert not static_index.worth_dropping(20_000, 100_000)  # cheaper to insert than to rebuild all
    assert not static_index.worth_dropping(5_000, 0)  # too small to matter
    assert static_index.worth_dropping(5_000, 0, min_chunks=1_000)
