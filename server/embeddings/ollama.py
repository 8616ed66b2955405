"""Embeddings from an Ollama server (POST /api/embed, batched)."""

from __future__ import annotations

from typing import Any

from server.embeddings.remote import RemoteEmbedder

OLLAMA_DEFAULT_URL = "http://127.0.0.1:11434"
OLLAMA_DEFAULT_MODEL = "nomic-embed-text"


class OllamaEmbedder(RemoteEmbedder):
    provider = "ollama"
    endpoint = "/api/embed"

    def _payload(self, texts: list[str]) -> dict[str, Any]:
        return {"model": self.model, "input": texts}

    def _vectors(self, body: Any) -> list[Any]:
        embeddings = body["embeddings"]
        if not isinstance(embeddings, list):
            raise TypeError("'embeddings' is not a list")
        return embeddings
