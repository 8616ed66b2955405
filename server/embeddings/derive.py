"""Derives the fast ("s8") transformer model from the shipped all-MiniLM-L6-v2 ONNX file.

The shipped model stores int8 weights behind ``Cast``/``DequantizeLinear`` → ``Mul`` nodes, which
onnxruntime constant-folds at session creation: it then runs fp32 MatMuls. Folding those nodes
ourselves into an fp32 graph and re-quantising it with ``quantize_dynamic(weight_type=QInt8)``
gives signed-int8 weights that the u8s8 (VNNI) kernels run faster (`bench/embed_speed.py`), at a cosine of
≥ 0.98 to the shipped model.

The result is cached in ``<data_dir>/models/`` under a name made of the source model's sha256
and the onnxruntime version (the quantiser's output may change between versions), with a
``.sha256`` sidecar written at derivation and checked at every load: a truncated or corrupted
file is derived again rather than loaded. Several processes starting at once take a file lock;
the model is written to a temporary file and renamed into place, so nobody sees half a file.

The code-tuned variant (the product's default) adds, before quantising, the low-rank updates of
``data/minilm-code-lora.npz`` (learned by ``server.embeddings.tune``) to the fp32 weights; its
cache name carries that file's sha256 as well.

Install-time use: ``python -m codebase_mcp.server.embeddings.derive [--variant code|s8] [--models-dir DIR]``
(``python -m server.embeddings.derive`` in a checkout; prints the model's path).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import io
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from server.embeddings.base import EmbeddingError, read_pinned

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)

S8_SUFFIX = "s8"
LORA_PATH = Path(__file__).parent / "data" / "minilm-code-lora.npz"
# Pinned, so that a replaced file cannot slip other weights into the model.
LORA_SHA256 = "140351dbcd66af1ca4426c58dbc84065a8c970238a3f9f1e1a61f53450482e48"
_FOLDABLE = frozenset({"Cast", "Mul", "DequantizeLinear"})


class DerivationError(Exception):
    """The fast model could not be derived (missing ``onnx``, bad source, unwritable cache ...)."""


@dataclass(frozen=True, slots=True)
class Lora:
    """Low-rank weight updates to add before quantising: an ``.npz`` of ``<layer>.a`` (in × r) and
    ``<layer>.b`` (r × out) per weight matrix, the update being ``a @ b``; ``sha256`` is pinned."""

    path: Path = LORA_PATH
    sha256: str = LORA_SHA256


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_path(models_dir: Path, source_sha256: str, lora: Lora | None = None) -> Path:
    """Where the fast model derived from ``source_sha256`` (and ``lora``) by this onnxruntime version lives."""
    import onnxruntime

    tuned = f"code-{lora.sha256[:12]}-" if lora is not None else ""
    return models_dir / f"minilm-l6-{tuned}{S8_SUFFIX}-{source_sha256[:16]}-ort{onnxruntime.__version__}.onnx"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def read_verified(path: Path) -> bytes | None:
    """The bytes of ``path`` when they match the sha256 its sidecar recorded at derivation, else None.

    Callers build their session from these very bytes, so the file cannot change in between.
    """
    try:
        expected = _sidecar(path).read_text(encoding="ascii").strip()
        data = path.read_bytes()
    except OSError:
        return None
    return data if expected and hashlib.sha256(data).hexdigest() == expected else None


def verified(path: Path) -> bool:
    """True when ``path`` exists and matches the sha256 its sidecar recorded at derivation."""
    try:
        expected = _sidecar(path).read_text(encoding="ascii").strip()
        return bool(expected) and sha256_file(path) == expected
    except OSError:
        return False


def fold_constants(model_bytes: bytes) -> bytes:
    """The same graph with every Cast/Mul/DequantizeLinear of constant inputs folded into fp32 weights."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:  # pragma: no cover - onnx is a dependency
        raise DerivationError("the onnx package is not installed") from exc
    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    values: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    kept = []
    folded: set[str] = set()
    for node in graph.node:
        if node.op_type in _FOLDABLE and node.input and all(name in values for name in node.input if name):
            values[node.output[0]] = _evaluate(node, [values[name] for name in node.input if name])
            folded.add(node.output[0])
            continue
        kept.append(node)
    used = {name for node in kept for name in node.input} | {o.name for o in graph.output}
    new_inits = [numpy_helper.from_array(array, name) for name, array in values.items() if name in used]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    onnx.checker.check_model(model)
    if not folded:
        raise DerivationError("the source model has no quantised constant weights to fold")
    return bytes(model.SerializeToString())


def matmul_weights(model: onnx.ModelProto) -> dict[str, str]:
    """Layer name (``encoder.layer.0.attention.self.query`` ...) → the initializer holding the weight
    (in × out) of its MatMul, recognised by the named bias the MatMul's output is added to."""
    graph = model.graph
    constants = {init.name for init in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in constants:
            continue
        for after in consumers.get(node.output[0], []):
            bias = next((n for n in after.input if n in constants and n.endswith(".bias")), None)
            if after.op_type == "Add" and bias is not None:
                found[bias.removeprefix("inner.").removesuffix(".bias")] = node.input[1]
    return found


def read_lora(lora: Lora) -> dict[str, np.ndarray]:
    """Layer name → its weight update ``a @ b`` (float32, in × out), from the sha256-checked file."""
    try:
        data = read_pinned(lora.path, lora.sha256, what="code-tuned weights", remedy="Reinstall codebase-mcp.")
    except EmbeddingError as exc:  # missing or not the pinned file: a derivation that cannot happen
        raise DerivationError(str(exc)) from exc
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        layers = sorted({key.rsplit(".", 1)[0] for key in arrays.files})
        return {
            layer: (arrays[f"{layer}.a"].astype(np.float32) @ arrays[f"{layer}.b"].astype(np.float32))
            for layer in layers
        }


def apply_lora(model_bytes: bytes, updates: dict[str, np.ndarray]) -> bytes:
    """The fp32 graph ``model_bytes`` with each named layer's weight plus its update."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    names = matmul_weights(model)
    unknown = sorted(set(updates) - set(names))
    if unknown:
        raise DerivationError(f"the model has no weight matrices named {', '.join(unknown[:3])}")
    by_initializer = {names[layer]: update for layer, update in updates.items()}
    for init in model.graph.initializer:
        update = by_initializer.get(init.name)
        if update is None:
            continue
        weight = numpy_helper.to_array(init)
        if weight.shape != update.shape:
            raise DerivationError(f"update of shape {update.shape} for a weight of shape {weight.shape}")
        init.CopyFrom(numpy_helper.from_array((weight + update).astype(np.float32), init.name))
    return bytes(model.SerializeToString())


def _evaluate(node: onnx.NodeProto, inputs: list[np.ndarray]) -> np.ndarray:
    from onnx import helper

    op = node.op_type
    if op == "Cast":
        to = next(a.i for a in node.attribute if a.name == "to")
        return inputs[0].astype(helper.tensor_dtype_to_np_dtype(to))
    if op == "Mul":
        return np.asarray(inputs[0] * inputs[1]).astype(np.result_type(inputs[0], inputs[1]))
    # DequantizeLinear: (x - zero_point) * scale, per tensor or along ``axis``.
    x = inputs[0].astype(np.float32)
    scale = inputs[1].astype(np.float32)
    zero = inputs[2].astype(np.float32) if len(inputs) > 2 else np.zeros_like(scale)
    if scale.ndim == 1 and scale.size > 1:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * x.ndim
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    result: np.ndarray = ((x - zero) * scale).astype(np.float32)
    return result


def derive_s8(source: Path, source_sha256: str, destination: Path, lora: Lora | None = None) -> None:
    """Writes the s8 model derived from ``source`` (checked against ``source_sha256``), with
    ``lora``'s updates added when given, to ``destination``.

    Writes go to a temporary file next to ``destination`` and are renamed into place with the
    sidecar, so a crash leaves either nothing or a complete, verified pair.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        source_bytes = source.read_bytes()
    except OSError as exc:
        raise DerivationError(f"cannot read {source}: {exc}") from exc
    actual = hashlib.sha256(source_bytes).hexdigest()
    if actual != source_sha256:
        raise DerivationError(f"{source} has sha256 {actual}, expected {source_sha256}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=".derive-") as work:
        fp32 = Path(work) / "fp32.onnx"
        s8 = Path(work) / "s8.onnx"
        folded = fold_constants(source_bytes)
        fp32.write_bytes(apply_lora(folded, read_lora(lora)) if lora is not None else folded)
        quantize_dynamic(
            fp32,
            s8,
            weight_type=QuantType.QInt8,
            # Per-tensor scales lose too much on the FFN output weights (cosine ~0.94 to the
            # shipped model); per output channel keeps ≥ 0.99 at the same speed.
            per_channel=True,
            # Only the weight MatMuls: attention's activation×activation products and the
            # embedding Gather stay fp32 (quantising them costs accuracy, buys little).
            op_types_to_quantize=["MatMul"],
            extra_options={"MatMulConstBOnly": True},
        )
        digest = sha256_file(s8)
        # Sidecar off first: a reader must never pair the new model with an old digest (or
        # the reverse); without a sidecar it waits for the lock and checks again.
        _sidecar(destination).unlink(missing_ok=True)
        os.replace(s8, destination)
        tmp_sidecar = Path(work) / "sidecar"
        tmp_sidecar.write_text(digest + "\n", encoding="ascii")
        os.replace(tmp_sidecar, _sidecar(destination))


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_s8(source: Path, source_sha256: str, models_dir: Path, lora: Lora | None = None) -> Path:
    """The verified cached s8 model (code-tuned with ``lora``), deriving it first when missing or corrupted.

    Safe to call from several processes at once: one derives, the others wait on the lock and
    then find the verified file. Raises DerivationError when derivation is impossible.
    """
    target = cache_path(models_dir, source_sha256, lora)
    if verified(target):
        return target
    try:
        with _locked(target.with_name(target.name + ".lock")):
            if verified(target):  # another process finished while we waited
                return target
            if target.exists():
                logger.warning("Cached embedding model %s failed its sha256 check; deriving it again", target)
            started = time.perf_counter()
            derive_s8(source, source_sha256, target, lora)
            logger.info("Derived the s8 embedding model %s in %.1f s", target, time.perf_counter() - started)
    except OSError as exc:
        raise DerivationError(f"cannot write the derived model to {models_dir}: {exc}") from exc
    if not verified(target):
        raise DerivationError(f"the derived model {target} does not match its sha256 sidecar")
    return target


def main(argv: list[str] | None = None) -> None:
    from server.embeddings.local import MODEL_SHA256, shipped_model_path
    from server.settings import get_settings

    parser = argparse.ArgumentParser(description="Derive (or verify) the fast s8 embedding model.")
    parser.add_argument("--variant", choices=("code", "s8"), default="code", help="code-tuned (default) or not")
    parser.add_argument(
        "--models-dir", type=Path, default=None, help="default: EMBEDDING_MODELS_DIR or <CODEBASE_MCP_DATA_DIR>/models"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    lora = Lora() if args.variant == "code" else None
    path = ensure_s8(shipped_model_path(), MODEL_SHA256, args.models_dir or get_settings().models_dir, lora)
    print(path)


if __name__ == "__main__":
    main()
