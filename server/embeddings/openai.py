"""Embeddings from an OpenAI-compatible server (POST /v1/embeddings)."""

from __future__ import annotations

from typing import Any

from server.embeddings.base import EmbeddingError
from server.embeddings.remote import RemoteEmbedder

OPENAI_DEFAULT_URL = "https://api.openai.com"
OPENAI_DEFAULT_MODEL = "text-embedding-3-small"


class OpenAIEmbedder(RemoteEmbedder):
    provider = "openai"
    endpoint = "/v1/embeddings"

    @staticmethod
    def _clean_base_url(base_url: str) -> str:
        # Accept the common ".../v1" spelling of the base URL too.
        return base_url.rstrip("/").removesuffix("/v1")

    def _payload(self, texts: list[str]) -> dict[str, Any]:
        return {"model": self.model, "input": texts}

    def _vectors(self, body: Any) -> list[Any]:
        data = body["data"]
        if not isinstance(data, list):
            raise TypeError("'data' is not a list")
        # The API does not promise input order; "index" does.
        items = sorted(data, key=lambda item: item["index"])
        if [item["index"] for item in items] != list(range(len(items))):
            raise EmbeddingError(f"{self.url} returned indices that are not 0..{len(items) - 1}")
        return [item["embedding"] for item in items]
