"""Embedding providers: the offline local models (default), Ollama and OpenAI-compatible servers.

Two offline tiers share one 384-dimensional space:
- ``StaticEmbedder`` (``server.embeddings.static``): a distilled token table, thousands of chunks/s,
  synchronous; input ``static_text(rel_path, symbol, content)``.
- ``LocalEmbedder`` (``server.embeddings.local``): all-MiniLM-L6-v2, code-tuned (by default) and
  s8 re-quantised, ~100+ chunks/s; input ``embedding_text(rel_path, symbol, content)``; queries as
  they are, with ``urgent=True``.

Names are imported on first use: a chunking worker imports ``server.embeddings.static`` (numpy and
tokenizers) without paying for onnxruntime, onnx and the HTTP clients behind the other providers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.embeddings.base import Embedder, EmbeddingError, Vectors, normalize_rows
    from server.embeddings.factory import PROVIDERS, create_embedder
    from server.embeddings.local import (
        CODE_EMBEDDER_NAME,
        DEFAULT_MAX_LENGTH,
        LEGACY_LOCAL_EMBEDDER_NAME,
        LOCAL_DIMENSION,
        LOCAL_EMBEDDER_NAME,
        LocalEmbedder,
    )
    from server.embeddings.ollama import OllamaEmbedder
    from server.embeddings.openai import OpenAIEmbedder
    from server.embeddings.static import STATIC_EMBEDDER_NAME, StaticEmbedder, static_text
    from server.embeddings.text import embedding_text

_HOMES = {
    "Embedder": "base",
    "EmbeddingError": "base",
    "Vectors": "base",
    "normalize_rows": "base",
    "PROVIDERS": "factory",
    "create_embedder": "factory",
    "CODE_EMBEDDER_NAME": "local",
    "DEFAULT_MAX_LENGTH": "local",
    "LEGACY_LOCAL_EMBEDDER_NAME": "local",
    "LOCAL_DIMENSION": "local",
    "LOCAL_EMBEDDER_NAME": "local",
    "LocalEmbedder": "local",
    "OllamaEmbedder": "ollama",
    "OpenAIEmbedder": "openai",
    "STATIC_EMBEDDER_NAME": "static",
    "StaticEmbedder": "static",
    "static_text": "static",
    "embedding_text": "text",
}

__all__ = [
    "CODE_EMBEDDER_NAME",
    "DEFAULT_MAX_LENGTH",
    "LEGACY_LOCAL_EMBEDDER_NAME",
    "LOCAL_DIMENSION",
    "LOCAL_EMBEDDER_NAME",
    "PROVIDERS",
    "STATIC_EMBEDDER_NAME",
    "Embedder",
    "EmbeddingError",
    "LocalEmbedder",
    "OllamaEmbedder",
    "OpenAIEmbedder",
    "StaticEmbedder",
    "Vectors",
    "create_embedder",
    "embedding_text",
    "normalize_rows",
    "static_text",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
