"""Shared fixtures of the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.embeddings.derive import ensure_s8
from server.embeddings.local import MODEL_SHA256, shipped_model_path


@pytest.fixture(scope="session")
def s8_models_dir(models_dir: Path) -> Path:
    """The run's models directory (tests/conftest.py) holding the derived s8 model: derived once per run
    by whichever process needs it first (~20-60 s on 2 cores), found verified by all the others."""
    ensure_s8(shipped_model_path(), MODEL_SHA256, models_dir)
    return models_dir
