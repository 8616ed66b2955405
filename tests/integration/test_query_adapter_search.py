"""Search maps the plain local model's code-seeking query vectors through the query adapter, and only
when it is on; the code-tuned default model's queries go as they are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from server.app import App
from server.embeddings import Embedder, create_embedder
from server.embeddings.query_adapter import QueryAdapter
from server.search.engine import CodeSearch
from server.search.intent import Intent, intent_of
from server.settings import Settings

pytestmark = pytest.mark.integration

QUERIES = ["Read the settings file and return its sections.", "parse_config", "how do I configure logging"]
INTENTS: list[Intent] = ["code", "code", "docs"]


@pytest.fixture(scope="module")
def plain_embedder(models_dir: Path) -> Embedder:
    return create_embedder("local", model="all-MiniLM-L6-v2-s8", models_dir=models_dir)


@pytest.fixture
def app_embedder(plain_embedder: Embedder) -> Embedder:
    return plain_embedder  # the model the adapter was learned for


async def test_code_seeking_queries_go_through_the_adapter_when_it_is_on(app: App, plain_embedder: Embedder) -> None:
    assert [intent_of(q, identifier=q == "parse_config") for q in QUERIES] == INTENTS
    search = CodeSearch.from_app(app)
    assert search.query_adapter is not None
    raw = np.asarray(await plain_embedder.embed(QUERIES))
    adapted = np.asarray(await search.query_vectors(QUERIES, INTENTS))
    np.testing.assert_allclose(adapted[:2], QueryAdapter().apply(raw[:2]), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(adapted, axis=1), 1.0, atol=1e-5)
    assert np.all((adapted[:2] * raw[:2]).sum(axis=1) < 0.9999)
    np.testing.assert_array_equal(adapted[2], raw[2])  # docs-seeking: as it is


@pytest.mark.parametrize("model", ["plain, switched off", "code-tuned"])
async def test_otherwise_queries_are_embedded_as_they_are(
    settings: Settings, plain_embedder: Embedder, local_embedder: Embedder, model: str
) -> None:
    embedder = local_embedder if model == "code-tuned" else plain_embedder
    off = App(settings.model_copy(update={"query_adapter": model == "code-tuned"}), embedder=embedder)
    await off.start(workers=False)
    try:
        search = CodeSearch.from_app(off)
        assert search.query_adapter is None
        raw = np.asarray(await embedder.embed(QUERIES))
        np.testing.assert_array_equal(np.asarray(await search.query_vectors(QUERIES, INTENTS)), raw)
    finally:
        await off.close()
