"""The query adapter: the shipped map's pin and shape, when it applies, and the training maths
(the full derivation is `python -m server.embeddings.adapt`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from server.embeddings import EmbeddingError
from server.embeddings.adapt import Embedded, Recipe, loss_and_grad, mine, train
from server.embeddings.distill_corpus import RESERVED, CodeChunk
from server.embeddings.local import LEGACY_LOCAL_EMBEDDER_NAME, LOCAL_EMBEDDER_NAME
from server.embeddings.query_adapter import ADAPTER_PATH, ADAPTER_SHA256, DIM, QueryAdapter, adapter_for

pytestmark = pytest.mark.unit


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    normalised: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return normalised


def test_shipped_map_is_pinned_square_float32_and_its_manifest_names_it() -> None:
    assert hashlib.sha256(ADAPTER_PATH.read_bytes()).hexdigest() == ADAPTER_SHA256
    matrix = QueryAdapter().matrix
    assert matrix.shape == (DIM, DIM) and matrix.dtype == np.float32
    assert not np.allclose(matrix, np.eye(DIM))  # learned, not the identity
    info = json.loads(ADAPTER_PATH.with_suffix(".json").read_text())
    assert info["sha256"] == ADAPTER_SHA256
    trained = {p.split(":", 1)[1].split("==")[0].lower() for p in info["training_packages"]}
    assert trained and not trained & RESERVED
    assert info["dev"]["mrr@10 with"]["transformer"] > info["dev"]["mrr@10 without"]["transformer"]


def test_applied_vectors_change_and_stay_normalised() -> None:
    rng = np.random.default_rng(1)
    queries = unit_rows(rng, 5, DIM)
    adapted = QueryAdapter().apply(queries)
    assert adapted.shape == queries.shape and adapted.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(adapted, axis=1), 1.0, atol=1e-5)
    assert np.all((adapted * queries).sum(axis=1) < 0.9999)
    with pytest.raises(ValueError, match="shape"):
        QueryAdapter().apply(queries[:, :10])


def test_a_replaced_or_misshapen_file_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.npy"
    np.save(other, np.eye(DIM, dtype=np.float32))
    with pytest.raises(EmbeddingError, match="sha256"):
        _ = QueryAdapter(other, ADAPTER_SHA256).matrix
    small = tmp_path / "small.npy"
    np.save(small, np.eye(8, dtype=np.float32))
    with pytest.raises(EmbeddingError, match="float32"):
        _ = QueryAdapter(small, hashlib.sha256(small.read_bytes()).hexdigest()).matrix
    identity = QueryAdapter(other, hashlib.sha256(other.read_bytes()).hexdigest())
    rows = unit_rows(np.random.default_rng(2), 3, DIM)
    np.testing.assert_allclose(identity.apply(rows), rows, atol=1e-6)


def test_only_the_local_model_with_the_setting_on_gets_it() -> None:
    assert isinstance(adapter_for(LOCAL_EMBEDDER_NAME, True), QueryAdapter)
    assert isinstance(adapter_for(LEGACY_LOCAL_EMBEDDER_NAME, True), QueryAdapter)
    assert adapter_for(LOCAL_EMBEDDER_NAME, False) is None
    assert adapter_for("ollama:nomic-embed-text", True) is None


def synthetic(rng: np.random.Generator, dim: int = 12) -> Embedded:
    """Queries are a fixed rotation of their documents plus noise: a linear map can undo it."""
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    queries, documents, answers = [], [], []
    for _ in range(3):
        docs = unit_rows(rng, 30, dim)
        q = docs[:20] @ rotation.T + 0.05 * rng.standard_normal((20, dim))
        queries.append((q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32))
        documents.append(docs)
        answers.append(np.arange(20))
    return Embedded(queries, documents, answers)


def test_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(3)
    data = synthetic(rng, dim=6)
    w = np.eye(6) + 0.1 * rng.standard_normal((6, 6))
    _, grad = loss_and_grad(w, data, temperature=0.2, ridge=0.05)
    eps = 1e-3  # the products run in float32
    for i, j in [(0, 0), (1, 4), (5, 2)]:
        step = np.zeros_like(w)
        step[i, j] = eps
        up, _ = loss_and_grad(w + step, data, 0.2, 0.05)
        down, _ = loss_and_grad(w - step, data, 0.2, 0.05)
        assert grad[i, j] == pytest.approx((up - down) / (2 * eps), rel=2e-2, abs=1e-4)


def test_training_lowers_the_loss_and_retrieves_better() -> None:
    data = synthetic(np.random.default_rng(4))
    recipe = Recipe(temperature=0.1, ridge=0.0, learning_rate=0.02, steps=150, packages_per_step=0)

    def hits(w: np.ndarray) -> int:
        found = 0
        for q, d, a in zip(data.queries, data.documents, data.answers, strict=True):
            found += int((np.argmax((q @ w.T) @ d.T, axis=1) == a).sum())
        return found

    identity = np.eye(12)
    w, _ = train(data, recipe)
    assert loss_and_grad(w, data, 0.1, 0.0)[0] < 0.5 * loss_and_grad(identity, data, 0.1, 0.0)[0]
    assert hits(w) > hits(identity) and hits(w) >= 55  # of 60


JS_ADD = "// Add two numbers together here.\nfunction add(a, b) { return a + b }"


def test_pairs_leave_the_doc_comment_out_and_refuse_reserved_packages() -> None:
    documented = 'def load(path):\n    """Read the settings file at this path."""\n    return open(path).read()\n'
    bare = "def size(path):\n    return len(open(path).read())\n"
    chunks = [
        CodeChunk("pkg", "pkg/io.py", "load", documented, "python", "function"),
        CodeChunk("pkg", "pkg/io.py", "size", bare, "python", "function"),
        CodeChunk("pkg", "lib/a.js", "add", JS_ADD, "javascript", "function"),
    ]
    pairs = mine({"pkg==1.0": chunks}, Recipe())
    assert sorted(pairs.queries[0]) == ["Add two numbers together here.", "Read the settings file at this path."]
    assert len(pairs.documents[0]) == 3
    assert all("settings file" not in d and "two numbers" not in d for d in pairs.documents[0])
    for query, answer in zip(pairs.queries[0], pairs.answers[0], strict=True):
        assert ("load" in pairs.documents[0][answer]) == query.startswith("Read")
    with pytest.raises(ValueError, match="reserved"):
        mine({"django==5.0": chunks}, Recipe())
