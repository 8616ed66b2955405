"""Embedding providers: the offline local model (default), Ollama and OpenAI-compatible servers."""

from server.embeddings.base import Embedder, EmbeddingError, Vectors, normalize_rows
from server.embeddings.factory import PROVIDERS, create_embedder
from server.embeddings.local import LOCAL_DIMENSION, LOCAL_EMBEDDER_NAME, LocalEmbedder
from server.embeddings.ollama import OllamaEmbedder
from server.embeddings.openai import OpenAIEmbedder

__all__ = [
    "LOCAL_DIMENSION",
    "LOCAL_EMBEDDER_NAME",
    "PROVIDERS",
    "Embedder",
    "EmbeddingError",
    "LocalEmbedder",
    "OllamaEmbedder",
    "OpenAIEmbedder",
    "Vectors",
    "create_embedder",
    "normalize_rows",
]
