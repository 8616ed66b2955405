"""Builds the configured embedder.

The remote providers (and httpx under them) are imported only when one is configured: every process
builds an embedder at start, and most of them use the local model.
"""

from __future__ import annotations

from pathlib import Path

from server.embeddings.base import Embedder
from server.embeddings.local import (
    DEFAULT_LOCAL_VARIANT,
    DEFAULT_MAX_LENGTH,
    LOCAL_DIMENSION,
    LOCAL_MODEL_ID,
    LocalEmbedder,
    Variant,
)

PROVIDERS = ("local", "ollama", "openai")
# Model names the local provider accepts, and which variant each means ("-code-s8": the default;
# "-s8": the plain model; "-int8": the shipped model, the name projects created before s8 carry).
_LOCAL_MODEL_NAMES: dict[str, Variant] = {
    f"{LOCAL_MODEL_ID}-code-s8": "code",
    f"{LOCAL_MODEL_ID}-code": "code",
    LOCAL_MODEL_ID: "s8",
    f"{LOCAL_MODEL_ID}-s8": "s8",
    f"sentence-transformers/{LOCAL_MODEL_ID}": "s8",
    f"{LOCAL_MODEL_ID}-int8": "shipped",
}


def create_embedder(
    provider: str,
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    batch_size: int = 32,
    max_length: int = DEFAULT_MAX_LENGTH,
    threads: int | None = None,
    dimension: int | None = None,
    models_dir: Path | None = None,
    max_concurrency: int = 4,
) -> Embedder:
    """An embedder for ``provider`` ("local", "ollama" or "openai").

    ``max_length``, ``threads`` and ``models_dir`` (where the derived s8 model is cached; default
    ``<data_dir>/models``) apply to the local model only; ``base_url``, ``api_key``, ``dimension``
    (skips the probe call) and ``max_concurrency`` (HTTP requests in flight) to the remote ones.
    """
    if provider == "local":
        if model is not None and model not in _LOCAL_MODEL_NAMES:
            raise ValueError(f"The local provider only has {LOCAL_MODEL_ID}, not {model!r}")
        if dimension is not None and dimension != LOCAL_DIMENSION:
            raise ValueError(f"The local model has dimension {LOCAL_DIMENSION}, not {dimension}")
        variant = _LOCAL_MODEL_NAMES[model] if model is not None else DEFAULT_LOCAL_VARIANT
        return LocalEmbedder(
            batch_size=batch_size, max_length=max_length, threads=threads, variant=variant, models_dir=models_dir
        )
    if provider == "ollama":
        from server.embeddings.ollama import OLLAMA_DEFAULT_MODEL, OLLAMA_DEFAULT_URL, OllamaEmbedder

        return OllamaEmbedder(
            model=model or OLLAMA_DEFAULT_MODEL,
            base_url=base_url or OLLAMA_DEFAULT_URL,
            api_key=api_key,
            batch_size=batch_size,
            dimension=dimension,
            max_concurrency=max_concurrency,
        )
    if provider == "openai":
        from server.embeddings.openai import OPENAI_DEFAULT_MODEL, OPENAI_DEFAULT_URL, OpenAIEmbedder

        return OpenAIEmbedder(
            model=model or OPENAI_DEFAULT_MODEL,
            base_url=base_url or OPENAI_DEFAULT_URL,
            api_key=api_key,
            batch_size=batch_size,
            dimension=dimension,
            max_concurrency=max_concurrency,
        )
    raise ValueError(f"Unknown embedding provider {provider!r}; use one of {', '.join(PROVIDERS)}")
