"""Shared fixtures of the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.embeddings.derive import ensure_s8
from server.embeddings.local import MODEL_SHA256, shipped_model_path


@pytest.fixture(scope="session")
def s8_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory holding the derived s8 model, derived once per run (~20-60 s on 2 cores)."""
    directory = tmp_path_factory.mktemp("models")
    ensure_s8(shipped_model_path(), MODEL_SHA256, directory)
    return directory
