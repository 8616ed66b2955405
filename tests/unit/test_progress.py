"""The work model behind progress percentages and ETAs, on a fake clock."""

from __future__ import annotations

import pytest

from server.indexer.progress import INDEX_ROWS_PER_SECOND_GUESS, OVERHEAD_SECONDS, Progress, Reporter, WorkModel


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_percentage_is_the_share_of_expected_time_spent() -> None:
    clock = Clock()
    work = WorkModel(clock)
    work.start_store(1_000_000)
    clock.now = 10.0
    work.stored(500_000, chunks=1_000)  # 50 kB/s measured; 1 chunk per 500 bytes
    # Store: 10 s left. Embedding, not started: 2,000 chunks expected at the prior 100/s = 20 s.
    assert work.seconds_left() == pytest.approx(10.0 + 20.0 + OVERHEAD_SECONDS)
    assert work.percentage() == int(100 * 10 / (10 + 31))
    clock.now = 20.0
    work.stored(500_000, chunks=1_000)
    work.finish_store()
    work.start_embed(2_000)
    clock.now = 40.0
    work.embedded(1_000)  # 50 chunks/s measured: 20 s left
    assert work.seconds_left() == pytest.approx(20.0 + OVERHEAD_SECONDS)
    assert work.percentage() == int(100 * 40 / (40 + 21))


def test_a_run_with_little_to_store_is_mostly_embedding() -> None:
    clock = Clock()
    work = WorkModel(clock)
    work.unembedded_before = 10_000  # e.g. a run resumed after a cancel
    work.start_store(0)
    work.finish_store()
    work.start_embed(10_000)
    clock.now = 1.0
    assert work.percentage() < 2  # not "50 % because chunking is done"


def test_an_index_build_ahead_counts_in_the_eta_until_it_is_done() -> None:
    clock = Clock()
    work = WorkModel(clock)
    work.start_store(0)
    work.finish_store()
    without = work.seconds_left()
    build = 50_000 / INDEX_ROWS_PER_SECOND_GUESS
    work.expect_index(50_000)  # the load dropped the static vector index
    assert work.seconds_left() == pytest.approx(without + build)
    work.start_index(50_000)
    clock.now = build / 2
    assert work.seconds_left() == pytest.approx(without + build / 2)
    clock.now = build * 3  # slower than guessed: still some time left, not none
    assert work.seconds_left() == pytest.approx(without + build * 0.1)
    work.finish_index()
    assert work.seconds_left() == pytest.approx(without)


async def test_reporter_is_monotonic_below_100_until_done() -> None:
    seen: list[int] = []

    async def callback(p: Progress) -> None:
        seen.append(p.percentage)

    report = Reporter(callback)
    for pct, phase in [(10, "storing"), (5, "storing"), (100, "embedding"), (40, "embedding"), (100, "done")]:
        await report(Progress(pct, "", phase))  # type: ignore[arg-type]
    assert seen == [10, 10, 99, 99, 100]
