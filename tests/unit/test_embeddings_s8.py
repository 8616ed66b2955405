"""The derived s8 model: derivation, cache, sha256 sidecar, corruption recovery, concurrent first use."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from server.embeddings.derive import DerivationError, cache_path, derive_s8, ensure_s8, sha256_file, verified
from server.embeddings.local import (
    LEGACY_LOCAL_EMBEDDER_NAME,
    LOCAL_EMBEDDER_NAME,
    MODEL_SHA256,
    LocalEmbedder,
    shipped_model_path,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def derived(s8_models_dir: Path) -> Path:
    return cache_path(s8_models_dir, MODEL_SHA256)


def copy_cache(derived: Path, models_dir: Path) -> Path:
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / derived.name
    shutil.copyfile(derived, target)
    shutil.copyfile(derived.with_name(derived.name + ".sha256"), target.with_name(target.name + ".sha256"))
    return target


def real_code_chunks(count: int) -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    chunks: list[str] = []
    for path in sorted(stdlib.glob("*.py"))[:40]:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        chunks.extend("\n".join(lines[s : s + 40]) for s in range(0, len(lines) - 40, 200))
    return chunks[:count]


def test_derived_model_is_cached_under_source_hash_and_ort_version(derived: Path) -> None:
    import onnxruntime

    assert derived == cache_path(derived.parent, MODEL_SHA256)
    assert MODEL_SHA256[:16] in derived.name and f"ort{onnxruntime.__version__}" in derived.name
    sidecar = derived.with_name(derived.name + ".sha256")
    assert sidecar.read_text().strip() == sha256_file(derived)
    assert verified(derived)
    mtime = derived.stat().st_mtime_ns
    assert ensure_s8(shipped_model_path(), MODEL_SHA256, derived.parent) == derived
    assert derived.stat().st_mtime_ns == mtime  # reused, not derived again
    assert not list(derived.parent.glob(".derive-*"))  # no temporary leftovers


async def test_s8_vectors_are_close_to_the_shipped_model(derived: Path) -> None:
    chunks = real_code_chunks(64)
    fast = LocalEmbedder(models_dir=derived.parent, max_length=128)
    shipped = LocalEmbedder(variant="shipped", max_length=128)
    a, b = await fast.embed(chunks), await shipped.embed(chunks)
    assert fast.loaded_model == f"s8:{derived}"
    assert shipped.loaded_model is not None and shipped.loaded_model.startswith("shipped:")
    assert (fast.name, shipped.name) == (LOCAL_EMBEDDER_NAME, LEGACY_LOCAL_EMBEDDER_NAME)
    cosines = (a * b).sum(axis=1)
    assert float(cosines.min()) >= 0.98, cosines.min()
    assert not np.array_equal(a, b)  # it really is another model


async def test_corrupted_cache_is_derived_again(
    derived: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = copy_cache(derived, tmp_path / "models")
    good = target.read_bytes()
    with target.open("r+b") as handle:
        handle.truncate(len(good) // 2)
    assert not verified(target)
    embedder = LocalEmbedder(models_dir=tmp_path / "models")
    with caplog.at_level(logging.WARNING):
        vectors = await embedder.embed(["def parse(text): return json.loads(text)"])
    assert embedder.loaded_model == f"s8:{target}"
    assert verified(target) and target.stat().st_size == len(good)
    assert vectors.shape == (1, 384)
    assert any("failed its sha256 check" in r.getMessage() for r in caplog.records)


def test_tampered_source_is_not_derived(tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    data = bytearray(shipped_model_path().read_bytes())
    data[len(data) // 3] ^= 0x55
    source.write_bytes(bytes(data))
    with pytest.raises(DerivationError, match="sha256"):
        derive_s8(source, MODEL_SHA256, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


async def test_falls_back_to_the_shipped_model_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the models directory should be")
    embedder = LocalEmbedder(models_dir=blocked)
    with caplog.at_level(logging.WARNING, logger="server.embeddings"):
        first = await embedder.embed(["hello world"])
        second = await embedder.embed(["hello again"])
    assert embedder.loaded_model == f"shipped:{shipped_model_path()}"
    assert first.shape == second.shape == (1, 384)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "shipped model" in warnings[0].getMessage()


_CHILD = """
import logging, sys
from pathlib import Path
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from server.embeddings.derive import ensure_s8
from server.embeddings.local import MODEL_SHA256, shipped_model_path
path = ensure_s8(shipped_model_path(), MODEL_SHA256, Path(sys.argv[1]))
print("RESULT", path, path.stat().st_ino)
"""


def test_concurrent_first_use_derives_once(tmp_path: Path) -> None:
    models = tmp_path / "models"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    children = [
        subprocess.Popen([sys.executable, "-c", _CHILD, str(models)], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(3)
    ]
    outputs = [child.communicate(timeout=600)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0, 0], outputs
    derived_lines = [line for out in outputs for line in out.splitlines() if line.startswith("Derived")]
    assert len(derived_lines) == 1, outputs
    results = {line for out in outputs for line in out.splitlines() if line.startswith("RESULT")}
    assert len(results) == 1  # same path, same inode: nobody replaced the file after another used it
    (path,) = {line.split()[1] for line in results}
    assert verified(Path(path))
