"""Builds the configured embedder."""

from __future__ import annotations

from server.embeddings.base import Embedder
from server.embeddings.local import LOCAL_DIMENSION, LOCAL_MODEL_ID, LocalEmbedder
from server.embeddings.ollama import OLLAMA_DEFAULT_MODEL, OLLAMA_DEFAULT_URL, OllamaEmbedder
from server.embeddings.openai import OPENAI_DEFAULT_MODEL, OPENAI_DEFAULT_URL, OpenAIEmbedder

PROVIDERS = ("local", "ollama", "openai")
_LOCAL_MODEL_NAMES = {LOCAL_MODEL_ID, f"{LOCAL_MODEL_ID}-int8", f"sentence-transformers/{LOCAL_MODEL_ID}"}


def create_embedder(
    provider: str,
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    batch_size: int = 32,
    max_length: int = 128,
    threads: int | None = None,
    dimension: int | None = None,
) -> Embedder:
    """An embedder for ``provider`` ("local", "ollama" or "openai").

    ``max_length`` and ``threads`` apply to the local model only; ``base_url``, ``api_key``
    and ``dimension`` (skips the probe call) to the remote ones.
    """
    if provider == "local":
        if model is not None and model not in _LOCAL_MODEL_NAMES:
            raise ValueError(f"The local provider only has {LOCAL_MODEL_ID}, not {model!r}")
        if dimension is not None and dimension != LOCAL_DIMENSION:
            raise ValueError(f"The local model has dimension {LOCAL_DIMENSION}, not {dimension}")
        return LocalEmbedder(batch_size=batch_size, max_length=max_length, threads=threads)
    if provider == "ollama":
        return OllamaEmbedder(
            model=model or OLLAMA_DEFAULT_MODEL,
            base_url=base_url or OLLAMA_DEFAULT_URL,
            api_key=api_key,
            batch_size=batch_size,
            dimension=dimension,
        )
    if provider == "openai":
        return OpenAIEmbedder(
            model=model or OPENAI_DEFAULT_MODEL,
            base_url=base_url or OPENAI_DEFAULT_URL,
            api_key=api_key,
            batch_size=batch_size,
            dimension=dimension,
        )
    raise ValueError(f"Unknown embedding provider {provider!r}; use one of {', '.join(PROVIDERS)}")
