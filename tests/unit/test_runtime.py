"""Process start-up: where logs go, at which level, and which third-party advice is dropped."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.runtime import QuantizerAdviceFilter, setup_logging
from server.settings import Settings

QUANTIZER = os.path.join("", "site-packages", "onnxruntime", "quantization", "quantize.py")


@pytest.fixture
def restored_root() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, filters, level = root.handlers[:], root.filters[:], root.level
    yield root
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:], root.filters[:] = handlers, filters
    root.setLevel(level)
    logging.captureWarnings(False)


def _record(level: int, pathname: str) -> logging.LogRecord:
    return logging.LogRecord("root", level, pathname, 1, "Please consider to run pre-processing", None, None)


def test_only_the_quantizers_own_advice_is_dropped() -> None:
    keep = QuantizerAdviceFilter()
    assert not keep.filter(_record(logging.WARNING, "/venv/lib/python3.11" + QUANTIZER))
    assert keep.filter(_record(logging.ERROR, "/venv/lib/python3.11" + QUANTIZER))  # failures still show
    assert keep.filter(_record(logging.WARNING, "/work/server/embeddings/derive.py"))


def test_logs_go_to_log_file_at_log_level(tmp_path: Path, restored_root: logging.Logger) -> None:
    log_file = tmp_path / "logs" / "server.log"
    setup_logging(Settings(_env_file=None, log_level="info", log_file=log_file))
    setup_logging(Settings(_env_file=None, log_level="info", log_file=log_file))  # again: no duplicates
    assert restored_root.level == logging.INFO
    assert sum(isinstance(f, QuantizerAdviceFilter) for f in restored_root.filters) == 1
    logging.getLogger("server.test").info("kept")
    logging.getLogger("fastmcp.server").info("chatty library")  # below WARNING for libraries
    logging.warning("from a library that logs on the root logger")
    for handler in restored_root.handlers:
        handler.flush()
    text = log_file.read_text()
    assert " INFO server.test: kept" in text and "chatty library" not in text
    assert " WARNING root: from a library" in text


def test_the_default_level_is_warning() -> None:
    assert Settings(_env_file=None).log_level == "WARNING"
    with pytest.raises(ValueError, match="must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'loud'"):
        Settings(_env_file=None, log_level="loud")
