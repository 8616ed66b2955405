"""Urgent (query-time) embedding goes before background batches; execution provider choice."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from server.embeddings import Embedder, LocalEmbedder, create_embedder
from server.embeddings.local import (
    CODE_EMBEDDER_NAME,
    CPU_PROVIDER,
    CUDA_PROVIDER,
    LEGACY_LOCAL_EMBEDDER_NAME,
    LOCAL_EMBEDDER_NAME,
    select_providers,
)
from server.embeddings.priority import PriorityGate

pytestmark = pytest.mark.unit


def test_gate_admits_an_urgent_waiter_before_earlier_normal_waiters() -> None:
    gate = PriorityGate()
    order: list[str] = []
    release = threading.Event()
    holding = threading.Event()

    def first() -> None:
        with gate.hold():
            holding.set()
            release.wait()
            order.append("first")

    def worker(name: str, urgent: bool) -> None:
        with gate.hold(urgent=urgent):
            order.append(name)

    threads = [threading.Thread(target=first)]
    threads[0].start()
    holding.wait()
    for name in ("normal-1", "normal-2"):
        threads.append(threading.Thread(target=worker, args=(name, False)))
        threads[-1].start()
    threads.append(threading.Thread(target=worker, args=("urgent", True)))
    threads[-1].start()
    while gate.urgent_waiting == 0:  # the urgent thread is queued at the gate
        threading.Event().wait(0.001)
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    assert order[:2] == ["first", "urgent"]
    assert sorted(order[2:]) == ["normal-1", "normal-2"]


async def test_urgent_call_overtakes_a_long_background_embed(s8_models_dir: Path) -> None:
    embedder = LocalEmbedder(batch_size=2, models_dir=s8_models_dir, threads=1)
    await embedder.load()
    topics = ["parse json", "render html", "open socket", "compress bytes", "sort list", "hash password"]
    texts = [f"# {topics[i % 6]} number {i}\ndef step_{i}(value):\n    return value * {i}\n" * 3 for i in range(160)]
    background = asyncio.create_task(embedder.embed(texts))
    while not embedder._gate.busy:  # noqa: ASYNC110 - set by an inference thread
        await asyncio.sleep(0.005)  # until the background sub-batches are running
    query = await embedder.embed(["parse a json file"], urgent=True)
    assert not background.done()  # the query did not wait for the ~80 background sub-batches
    assert query.shape == (1, 384)
    vectors = await background
    # The background result is complete and in order despite the interruption. Activations are
    # quantised per batch, so other batch neighbours shift vectors slightly: compare by cosine.
    alone = np.vstack([await embedder.embed([text]) for text in texts[:6]])
    similarity = vectors[:6] @ alone.T
    assert list(similarity.argmax(axis=1)) == list(range(6))
    assert float(np.diag(similarity).min()) > 0.99
    await embedder.aclose()


async def test_cancel_lands_within_a_sub_batch(s8_models_dir: Path) -> None:
    embedder = LocalEmbedder(batch_size=2, models_dir=s8_models_dir, threads=1)
    await embedder.load()
    task = asyncio.create_task(embedder.embed(["x = 1\n" * 30] * 400))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await embedder.embed(["still works"], urgent=True)).shape == (1, 384)


def test_provider_choice_prefers_cuda_when_offered() -> None:
    assert select_providers(["CPUExecutionProvider"]) == [CPU_PROVIDER]
    assert select_providers(["AzureExecutionProvider", "CPUExecutionProvider"]) == [CPU_PROVIDER]
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert select_providers(gpu) == [CUDA_PROVIDER, CPU_PROVIDER]
    embedder = LocalEmbedder(available_providers=gpu)
    assert embedder.providers == [CUDA_PROVIDER, CPU_PROVIDER]


def test_factory_variants_and_names(tmp_path: Path) -> None:
    default = create_embedder("local", models_dir=tmp_path)
    assert isinstance(default, LocalEmbedder) and isinstance(default, Embedder)
    assert (default.name, default.variant, default.max_length, default.models_dir) == (
        CODE_EMBEDDER_NAME,
        "code",
        64,
        tmp_path,
    )
    plain = create_embedder("local", model="all-MiniLM-L6-v2")
    assert isinstance(plain, LocalEmbedder)
    assert (plain.name, plain.variant) == (LOCAL_EMBEDDER_NAME, "s8")
    legacy = create_embedder("local", model="all-MiniLM-L6-v2-int8")
    assert isinstance(legacy, LocalEmbedder)
    assert (legacy.name, legacy.variant) == (LEGACY_LOCAL_EMBEDDER_NAME, "shipped")
    with pytest.raises(ValueError, match="only has"):
        create_embedder("local", model="bge-small")
