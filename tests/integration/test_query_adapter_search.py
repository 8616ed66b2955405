"""Search maps the local model's query vectors through the query adapter, and only when it is on."""

from __future__ import annotations

import numpy as np
import pytest

from server.app import App
from server.embeddings import Embedder
from server.embeddings.query_adapter import QueryAdapter
from server.search.engine import CodeSearch
from server.settings import Settings

pytestmark = pytest.mark.integration

QUERIES = ["Read the settings file and return its sections.", "parse_config"]


async def test_queries_go_through_the_adapter_when_it_is_on(app: App, local_embedder: Embedder) -> None:
    search = CodeSearch.from_app(app)
    assert search.query_adapter is not None
    raw = np.asarray(await local_embedder.embed(QUERIES))
    adapted = np.asarray(await search.query_vectors(QUERIES))
    np.testing.assert_allclose(adapted, QueryAdapter().apply(raw), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(adapted, axis=1), 1.0, atol=1e-5)
    assert np.all((adapted * raw).sum(axis=1) < 0.9999)


async def test_switched_off_queries_are_embedded_as_they_are(settings: Settings, local_embedder: Embedder) -> None:
    off = App(settings.model_copy(update={"query_adapter": False}), embedder=local_embedder)
    await off.start(workers=False)
    try:
        search = CodeSearch.from_app(off)
        assert search.query_adapter is None
        raw = np.asarray(await local_embedder.embed(QUERIES))
        np.testing.assert_array_equal(np.asarray(await search.query_vectors(QUERIES)), raw)
    finally:
        await off.close()
