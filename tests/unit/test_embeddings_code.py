"""The code-tuned transformer: its low-rank updates, their derivation into the s8 model, its names."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from server.embeddings import EmbeddingError, LocalEmbedder, create_embedder
from server.embeddings.derive import (
    LORA_PATH,
    LORA_SHA256,
    DerivationError,
    Lora,
    apply_lora,
    cache_path,
    fold_constants,
    matmul_weights,
    read_lora,
)
from server.embeddings.local import (
    CODE_EMBEDDER_NAME,
    LEGACY_LOCAL_EMBEDDER_NAME,
    LOCAL_EMBEDDER_NAME,
    MODEL_SHA256,
    replaced_embedders,
    shipped_model_path,
)
from server.embeddings.query_adapter import adapter_for


@pytest.fixture(scope="module")
def folded() -> bytes:
    return fold_constants(shipped_model_path().read_bytes())


def _weights(model_bytes: bytes) -> dict[str, np.ndarray]:
    model = onnx.load_from_string(model_bytes)
    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    return {layer: arrays[init] for layer, init in matmul_weights(model).items()}


def _write_updates(path: Path, updates: dict[str, tuple[np.ndarray, np.ndarray]]) -> Lora:
    arrays = {f"{name}.{side}": part for name, (a, b) in updates.items() for side, part in (("a", a), ("b", b))}
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return Lora(path, hashlib.sha256(path.read_bytes()).hexdigest())


def test_every_weight_matrix_is_found_by_its_layer_name(folded: bytes) -> None:
    weights = _weights(folded)
    assert len(weights) == 36  # six layers × query, key, value, attention output, FFN in, FFN out
    assert weights["encoder.layer.0.attention.self.query"].shape == (384, 384)
    assert weights["encoder.layer.5.intermediate.dense"].shape == (384, 1536)
    assert weights["encoder.layer.5.output.dense"].shape == (1536, 384)


def test_an_update_is_added_to_its_own_weight_only(folded: bytes, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    layer = "encoder.layer.2.attention.self.value"
    a, b = rng.normal(size=(384, 4)).astype(np.float32), rng.normal(size=(4, 384)).astype(np.float32)
    lora = _write_updates(tmp_path / "u.npz", {layer: (a, b)})
    before = _weights(folded)
    after = _weights(apply_lora(folded, read_lora(lora)))
    np.testing.assert_allclose(after[layer], before[layer] + a @ b, rtol=1e-5, atol=1e-5)
    assert all(np.array_equal(after[name], before[name]) for name in before if name != layer)


def test_bad_updates_are_refused_with_a_reason(folded: bytes, tmp_path: Path) -> None:
    wrong_shape = _write_updates(
        tmp_path / "s.npz", {"encoder.layer.0.output.dense": (np.ones((384, 2)), np.ones((2, 1536)))}
    )
    with pytest.raises(DerivationError, match="shape"):
        apply_lora(folded, read_lora(wrong_shape))
    unknown = _write_updates(
        tmp_path / "n.npz", {"encoder.layer.9.output.dense": (np.ones((1536, 1)), np.ones((1, 384)))}
    )
    with pytest.raises(DerivationError, match=r"no weight matrices named encoder\.layer\.9"):
        apply_lora(folded, read_lora(unknown))
    swapped = Lora(unknown.path, wrong_shape.sha256)  # a file that is not the pinned one
    with pytest.raises(DerivationError, match="sha256"):
        read_lora(swapped)


def test_the_shipped_updates_are_the_pinned_ones_and_touch_every_matrix(folded: bytes) -> None:
    assert hashlib.sha256(LORA_PATH.read_bytes()).hexdigest() == LORA_SHA256
    manifest = json.loads(LORA_PATH.with_suffix(".json").read_text())
    assert manifest["sha256"] == LORA_SHA256
    updates = read_lora(Lora())
    weights = _weights(folded)
    assert set(updates) == set(weights)
    for name, update in updates.items():
        assert update.shape == weights[name].shape
        assert 0 < float(np.abs(update).max()) < float(np.abs(weights[name]).max())  # small, not zero


def test_the_code_model_is_derived_under_its_own_name_and_differs_from_s8(models_dir: Path) -> None:
    code = LocalEmbedder(variant="code", models_dir=models_dir)
    plain = LocalEmbedder(variant="s8", models_dir=models_dir)
    texts = ["Return the parsed link headers.", "def parse_links(value):\n    return [v.strip() for v in value]"]
    tuned, base = code.embed_sync(texts), plain.embed_sync(texts)
    assert code.loaded_model == f"code:{cache_path(models_dir, MODEL_SHA256, Lora())}"
    assert LORA_SHA256[:12] in str(code.loaded_model)
    cosines = (tuned * base).sum(axis=1)
    assert np.all(cosines < 0.999) and np.all(cosines > 0.5)  # moved, but the same model underneath
    np.testing.assert_allclose(np.linalg.norm(tuned, axis=1), 1.0, rtol=1e-5)


async def test_the_code_model_does_not_fall_back_to_another_model(tmp_path: Path) -> None:
    blocked = tmp_path / "models"
    blocked.write_text("a file, not a directory")
    embedder = LocalEmbedder(variant="code", models_dir=blocked)
    with pytest.raises(EmbeddingError, match="EMBEDDING_MODEL=all-MiniLM-L6-v2-s8"):
        await embedder.embed(["anything"])
    assert embedder.loaded_model is None


def test_names_defaults_and_what_the_code_model_replaces(tmp_path: Path) -> None:
    default = create_embedder("local", models_dir=tmp_path)
    assert isinstance(default, LocalEmbedder)
    assert (default.name, default.variant) == (CODE_EMBEDDER_NAME, "code")
    assert create_embedder("local", model="all-MiniLM-L6-v2-s8").name == LOCAL_EMBEDDER_NAME
    assert create_embedder("local", model="all-MiniLM-L6-v2-code-s8").name == CODE_EMBEDDER_NAME
    assert replaced_embedders(CODE_EMBEDDER_NAME) == (LOCAL_EMBEDDER_NAME, LEGACY_LOCAL_EMBEDDER_NAME)
    assert replaced_embedders(LOCAL_EMBEDDER_NAME) == ()
    # The query adapter was learned for the plain model's vectors: the tuned one goes without.
    assert adapter_for(CODE_EMBEDDER_NAME, True) is None
    assert adapter_for(LOCAL_EMBEDDER_NAME, True) is not None


def test_tuning_batches_stay_within_a_package_and_cover_every_pair() -> None:
    from server.embeddings.adapt import Pairs
    from server.embeddings.tune import Recipe, batches

    queries = [[f"a{i}" for i in range(70)], [f"b{i}" for i in range(33)]]
    pairs = Pairs(
        ["a==1", "b==1"],
        queries,
        [list(range(70)), list(range(33))],
        [[f"A{i}" for i in range(70)], [f"B{i}" for i in range(33)]],
    )
    plan = batches(pairs, Recipe(batch=32))
    assert all(len({q[0] for q, _, _ in batch}) == 1 for batch in plan)  # one package per batch
    assert all(d == q.upper() and h is None for batch in plan for q, d, h in batch)  # each with its own document
    covered = [q for batch in plan for q, _, _ in batch]
    # 70 = 32 + 32 + 6; 33 = 32 + 1, and a batch of one (no negatives) is left out
    assert sorted(len(batch) for batch in plan) == [6, 32, 32, 32]
    assert len(set(covered)) == len(covered) == 102 and set(queries[0]) <= set(covered)
    assert plan == batches(pairs, Recipe(batch=32))  # seeded


def test_hard_negatives_are_the_best_wrong_answer_of_the_package_and_never_a_twin() -> None:
    from server.embeddings.adapt import Pairs
    from server.embeddings.tune import Recipe, batches, hard_negatives

    vectors = {  # 2-d stand-ins for the base model: A1 is the closest wrong answer to q0 (A3 is nearer but a twin's)
        "q0": [1.0, 0.0], "q1": [0.0, 1.0], "q2": [1.0, 0.0],
        "A0": [0.6, 0.8], "A1": [0.99, 0.14], "A2": [0.0, 1.0], "A3": [0.8, 0.6],
    }  # fmt: skip
    # q2 repeats q0's sentence: its document (A3) must not be q0's negative, nor A0 q2's
    pairs = Pairs(["a==1"], [["q0", "q1", "q0"]], [[0, 2, 3]], [["A0", "A1", "A2", "A3"]])
    hard = hard_negatives(pairs, lambda texts: [vectors[t] for t in texts])
    assert hard == [[1, 0, 1]]  # q1's best wrong answer is A0 (0.8), before A3 (0.6)
    plan = batches(pairs, Recipe(batch=32), hard)
    assert sorted((q, d, h) for batch in plan for q, d, h in batch) == [
        ("q0", "A0", "A1"), ("q0", "A3", "A1"), ("q1", "A2", "A0"),
    ]  # fmt: skip


def test_written_updates_are_byte_identical_and_readable(tmp_path: Path) -> None:
    from server.embeddings.tune import write_updates

    rng = np.random.default_rng(1)
    updates = {
        "encoder.layer.0.attention.self.query.a": rng.normal(size=(384, 2)).astype(np.float32),
        "encoder.layer.0.attention.self.query.b": rng.normal(size=(2, 384)).astype(np.float32),
    }
    first = write_updates(tmp_path / "one.npz", updates)
    assert write_updates(tmp_path / "two.npz", updates) == first
    delta = read_lora(Lora(tmp_path / "one.npz", first))["encoder.layer.0.attention.self.query"]
    np.testing.assert_allclose(
        delta,
        updates["encoder.layer.0.attention.self.query.a"] @ updates["encoder.layer.0.attention.self.query.b"],
        rtol=1e-6,
    )
