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

Install-time use: ``python -m server.embeddings.derive [--models-dir DIR]`` (prints the model's path).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)

S8_SUFFIX = "s8"
_FOLDABLE = frozenset({"Cast", "Mul", "DequantizeLinear"})


class DerivationError(Exception):
    """The fast model could not be derived (missing ``onnx``, bad source, unwritable cache ...)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_path(models_dir: Path, source_sha256: str) -> Path:
    """Where the fast model derived from ``source_sha256`` by this onnxruntime version lives."""
    import onnxruntime

    return models_dir / f"minilm-l6-{S8_SUFFIX}-{source_sha256[:16]}-ort{onnxruntime.__version__}.onnx"


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


def derive_s8(source: Path, source_sha256: str, destination: Path) -> None:
    """Writes the s8 model derived from ``source`` (checked against ``source_sha256``) to ``destination``.

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
        fp32.write_bytes(fold_constants(source_bytes))
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


def ensure_s8(source: Path, source_sha256: str, models_dir: Path) -> Path:
    """The verified cached s8 model, deriving it first when missing or corrupted.

    Safe to call from several processes at once: one derives, the others wait on the lock and
    then find the verified file. Raises DerivationError when derivation is impossible.
    """
    target = cache_path(models_dir, source_sha256)
    if verified(target):
        return target
    try:
        with _locked(target.with_name(target.name + ".lock")):
            if verified(target):  # another process finished while we waited
                return target
            if target.exists():
                logger.warning("Cached embedding model %s failed its sha256 check; deriving it again", target)
            started = time.perf_counter()
            derive_s8(source, source_sha256, target)
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
    parser.add_argument(
        "--models-dir", type=Path, default=None, help="default: EMBEDDING_MODELS_DIR or <CODEBASE_MCP_DATA_DIR>/models"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = ensure_s8(shipped_model_path(), MODEL_SHA256, args.models_dir or get_settings().models_dir)
    print(path)


if __name__ == "__main__":
    main()
