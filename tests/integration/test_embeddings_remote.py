"""Ollama and OpenAI-compatible embedders against a real local HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import numpy as np
import pytest

from server.embeddings import EmbeddingError, OllamaEmbedder, OpenAIEmbedder, create_embedder
from server.embeddings.remote import RemoteEmbedder

Wire = Literal["ollama", "openai"]
DIMENSION = 8
FAST_RETRIES: dict[str, Any] = {"backoff_base": 0.001, "backoff_max": 0.01}


def raw_vector(text: str) -> list[float]:
    """Unnormalised and different per text, so order and normalisation can be checked."""
    vector = [0.0] * DIMENSION
    vector[0] = float(len(text))
    vector[1] = 3.0
    return vector


def expected_rows(texts: list[str]) -> np.ndarray:
    rows = np.array([raw_vector(t) for t in texts])
    normalised: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return normalised


@dataclass
class Reply:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any


class FakeEmbeddingServer:
    """Speaks one protocol; scripted replies (``queue``) are served first, then real answers."""

    def __init__(self, protocol: Wire) -> None:
        self.protocol = protocol
        self.requests: list[Request] = []
        self.queue: list[Reply] = []
        self.answer: Callable[[list[str]], Any] | None = None  # overrides the well-formed answer
        self.delay = 0.0
        self.delay_for: Callable[[list[str]], float] | None = None  # per request, overrides ``delay``
        self.in_flight = 0
        self.peak_in_flight = 0
        self._count_lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> FakeEmbeddingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()

    def respond(self, path: str, body: Any) -> Reply:
        if self.queue:
            return self.queue.pop(0)
        wanted = "/api/embed" if self.protocol == "ollama" else "/v1/embeddings"
        if path != wanted:
            return Reply(404, "not found")
        texts: list[str] = body["input"]
        if self.answer is not None:
            return Reply(200, json.dumps(self.answer(texts)))
        if self.protocol == "ollama":
            return Reply(200, json.dumps({"embeddings": [raw_vector(t) for t in texts]}))
        data = [{"object": "embedding", "index": i, "embedding": raw_vector(t)} for i, t in enumerate(texts)]
        return Reply(200, json.dumps({"data": data[::-1]}))  # out of order on purpose

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                body = json.loads(raw)
                fake.requests.append(Request(self.path, dict(self.headers.items()), body))
                with fake._count_lock:
                    fake.in_flight += 1
                    fake.peak_in_flight = max(fake.peak_in_flight, fake.in_flight)
                try:
                    texts = body.get("input") if isinstance(body, dict) else None
                    time.sleep(fake.delay_for(texts) if fake.delay_for and texts else fake.delay)
                finally:
                    with fake._count_lock:
                        fake.in_flight -= 1
                reply = fake.respond(self.path, body)
                payload = reply.body.encode()
                # The timeout test's client hangs up before the reply.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        return Handler


@pytest.fixture(params=["ollama", "openai"])
def server(request: pytest.FixtureRequest) -> Iterator[FakeEmbeddingServer]:
    with FakeEmbeddingServer(request.param) as fake:
        yield fake


def make(server: FakeEmbeddingServer, **kwargs: Any) -> RemoteEmbedder:
    options = {"model": "test-model", "base_url": server.url, **FAST_RETRIES, **kwargs}
    if server.protocol == "ollama":
        return OllamaEmbedder(**options)
    return OpenAIEmbedder(**options)


async def test_batches_in_order_and_normalised(server: FakeEmbeddingServer) -> None:
    embedder = make(server, batch_size=2)
    texts = ["a", "bbbb", "cc", "dddddd", "eee"]
    vectors = await embedder.embed(texts)
    await embedder.aclose()

    # Batches go out concurrently, so they may arrive in any order.
    assert sorted(r.body["input"] for r in server.requests) == [["a", "bbbb"], ["cc", "dddddd"], ["eee"]]
    assert all(r.body["model"] == "test-model" for r in server.requests)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected_rows(texts), rtol=1e-6)
    assert embedder.dimension == DIMENSION
    assert embedder.name == f"{server.protocol}:test-model"


async def test_dimension_is_probed_once_or_taken_as_given(server: FakeEmbeddingServer) -> None:
    embedder = make(server)
    with pytest.raises(EmbeddingError, match="not known yet"):
        _ = embedder.dimension
    await embedder.load()
    await embedder.load()
    assert embedder.dimension == DIMENSION
    assert (await embedder.embed([])).shape == (0, DIMENSION)
    assert len(server.requests) == 1  # a single probe

    given = make(server, dimension=DIMENSION)
    assert given.dimension == DIMENSION
    assert (await given.embed([])).shape == (0, DIMENSION)
    assert len(server.requests) == 1  # no probe needed

    wrong = make(server, dimension=16)
    with pytest.raises(EmbeddingError, match=r"8-dimensional vectors .* expected 16"):
        await wrong.embed(["x"])
    for each in (embedder, given, wrong):
        await each.aclose()


async def test_retries_after_503_then_succeeds(server: FakeEmbeddingServer) -> None:
    server.queue = [Reply(503, "overloaded"), Reply(502, "bad gateway")]
    embedder = make(server)
    vectors = await embedder.embed(["hello"])
    await embedder.aclose()
    assert len(server.requests) == 3
    np.testing.assert_allclose(vectors, expected_rows(["hello"]), rtol=1e-6)


async def test_429_is_retried_honouring_retry_after_then_gives_up(server: FakeEmbeddingServer) -> None:
    server.queue = [Reply(429, "slow down", {"Retry-After": "0.2"})]
    embedder = make(server, backoff_max=1.0)
    started = time.perf_counter()
    assert (await embedder.embed(["x"])).shape == (1, DIMENSION)
    assert time.perf_counter() - started >= 0.2
    assert len(server.requests) == 2

    server.queue = [Reply(429, "slow down")] * 3
    limited = make(server, max_attempts=3)
    with pytest.raises(EmbeddingError, match="429") as caught:
        await limited.embed(["x"])
    assert "3 times" in str(caught.value)
    assert len(server.requests) == 2 + 3
    await embedder.aclose()
    await limited.aclose()


async def test_400_fails_at_once_with_the_server_message(server: FakeEmbeddingServer) -> None:
    server.queue = [Reply(400, '{"error": "input too long"}')]
    embedder = make(server)
    with pytest.raises(EmbeddingError, match="HTTP 400") as caught:
        await embedder.embed(["x"])
    await embedder.aclose()
    assert "input too long" in str(caught.value)
    assert len(server.requests) == 1


async def test_unknown_model_404_names_the_model(server: FakeEmbeddingServer) -> None:
    server.queue = [Reply(404, '{"error": "model not found"}')]
    embedder = make(server)
    with pytest.raises(EmbeddingError, match="'test-model' exists"):
        await embedder.embed(["x"])
    await embedder.aclose()


async def test_wrong_number_of_vectors_is_an_error(server: FakeEmbeddingServer) -> None:
    def one_short(texts: list[str]) -> Any:
        vectors = [raw_vector(t) for t in texts[:-1]]
        if server.protocol == "ollama":
            return {"embeddings": vectors}
        return {"data": [{"index": i, "embedding": v} for i, v in enumerate(vectors)]}

    server.answer = one_short
    embedder = make(server)
    with pytest.raises(EmbeddingError, match="returned 2 vectors for 3 texts"):
        await embedder.embed(["a", "b", "c"])
    await embedder.aclose()


async def test_inconsistent_dimensions_and_malformed_bodies_are_errors(server: FakeEmbeddingServer) -> None:
    key = "embeddings" if server.protocol == "ollama" else "data"

    def ragged(texts: list[str]) -> Any:
        vectors = [[1.0, 2.0], [1.0, 2.0, 3.0]]
        if server.protocol == "ollama":
            return {"embeddings": vectors}
        return {"data": [{"index": i, "embedding": v} for i, v in enumerate(vectors)]}

    embedder = make(server)
    server.answer = ragged
    with pytest.raises(EmbeddingError, match="inconsistent dimensions"):
        await embedder.embed(["a", "b"])

    server.answer = None
    server.queue = [Reply(200, "<html>proxy error</html>")]
    with pytest.raises(EmbeddingError, match="not JSON"):
        await embedder.embed(["a"])

    server.queue = [Reply(200, json.dumps({"unexpected": []}))]
    with pytest.raises(EmbeddingError, match=f"unexpected shape.*{key}"):
        await embedder.embed(["a"])
    await embedder.aclose()


async def test_openai_sends_bearer_key_and_accepts_v1_base_url() -> None:
    with FakeEmbeddingServer("openai") as server:
        embedder = create_embedder("openai", model="m", base_url=server.url + "/v1/", api_key="sk-test")
        await embedder.embed(["x"])
        await embedder.aclose()
        anonymous = create_embedder("openai", model="m", base_url=server.url)
        await anonymous.embed(["x"])
        await anonymous.aclose()
    assert [r.path for r in server.requests] == ["/v1/embeddings", "/v1/embeddings"]
    assert server.requests[0].headers["Authorization"] == "Bearer sk-test"
    assert "Authorization" not in server.requests[1].headers


async def test_ollama_via_factory() -> None:
    with FakeEmbeddingServer("ollama") as server:
        embedder = create_embedder("ollama", model="nomic-embed-text", base_url=server.url, batch_size=1)
        assert embedder.name == "ollama:nomic-embed-text"
        vectors = await embedder.embed(["one", "three"])
        await embedder.aclose()
    assert len(server.requests) == 2
    np.testing.assert_allclose(vectors, expected_rows(["one", "three"]), rtol=1e-6)


async def test_unreachable_server_names_the_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens there
    embedder = OllamaEmbedder(model="m", base_url=f"http://127.0.0.1:{port}", max_attempts=2, **FAST_RETRIES)
    with pytest.raises(EmbeddingError, match="Cannot reach ollama") as caught:
        await embedder.embed(["x"])
    await embedder.aclose()
    assert f"http://127.0.0.1:{port}/api/embed" in str(caught.value)
    assert "running" in str(caught.value)


async def test_timeouts_are_retried_then_reported() -> None:
    with FakeEmbeddingServer("ollama") as server:
        server.delay = 0.3
        embedder = OllamaEmbedder(model="m", base_url=server.url, timeout=0.1, max_attempts=2, **FAST_RETRIES)
        with pytest.raises(EmbeddingError, match="timed out after 2 attempts"):
            await embedder.embed(["x"])
        await embedder.aclose()
    assert len(server.requests) == 2


async def test_batches_are_pipelined_bounded_and_kept_in_order(server: FakeEmbeddingServer) -> None:
    # Earlier batches answer slower than later ones, so completion order is the reverse of input order.
    texts = [f"text-{'x' * i}" for i in range(12)]
    server.delay_for = lambda batch: 0.05 + 0.03 * (12 - len(batch[0]) + 5)
    embedder = make(server, batch_size=1, max_concurrency=4)
    vectors = await embedder.embed(texts)
    await embedder.aclose()
    assert len(server.requests) == 12
    assert 2 <= server.peak_in_flight <= 4  # requests overlapped, never more than allowed
    np.testing.assert_allclose(vectors, expected_rows(texts), rtol=1e-6)


async def test_one_request_at_a_time_when_asked(server: FakeEmbeddingServer) -> None:
    server.delay = 0.02
    embedder = make(server, batch_size=1, max_concurrency=1)
    texts = ["a", "bb", "ccc", "dddd"]
    vectors = await embedder.embed(texts)
    await embedder.aclose()
    assert server.peak_in_flight == 1
    assert [r.body["input"] for r in server.requests] == [[t] for t in texts]
    np.testing.assert_allclose(vectors, expected_rows(texts), rtol=1e-6)


async def test_cancel_stops_pipelined_batches(server: FakeEmbeddingServer) -> None:
    server.delay = 1.5
    embedder = make(server, batch_size=1, max_concurrency=3)
    task = asyncio.create_task(embedder.embed([f"t{i}" for i in range(30)]))
    while len(server.requests) < 3:  # noqa: ASYNC110 - the server runs in threads
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    await asyncio.sleep(0.3)
    assert len(server.requests) == 3  # nothing new was sent after the cancel
    await embedder.aclose()


async def test_a_failed_batch_fails_the_call_and_stops_the_rest(server: FakeEmbeddingServer) -> None:
    def reject_third(batch: list[str]) -> float:
        return 0.0 if batch == ["t2"] else 0.3

    server.delay_for = reject_third
    server.queue = []
    original = server.respond

    def respond(path: str, body: Any) -> Reply:
        if body.get("input") == ["t2"]:
            return Reply(400, '{"error": "bad input t2"}')
        return original(path, body)

    server.respond = respond  # type: ignore[method-assign]
    embedder = make(server, batch_size=1, max_concurrency=4)
    with pytest.raises(EmbeddingError, match="bad input t2"):
        await embedder.embed([f"t{i}" for i in range(20)])
    await asyncio.sleep(0.5)
    assert len(server.requests) <= 4  # the batches waiting for a slot were never sent
    await embedder.aclose()
