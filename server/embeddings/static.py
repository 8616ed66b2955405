"""Static tier: a token-embedding table distilled from the s8 MiniLM, pure numpy, ~thousands of chunks/s.

A text's vector is the L2-normalised sum of the table rows of its WordPiece tokens (each row
already carries its token's weight). The table was fitted by ``server.embeddings.distill`` so
that this sum lands close to the transformer's vector of the same chunk, in the same 384-dim
space; see ``data/static-minilm-code.json`` for the recipe, training packages and figures.

The table ships as package data rather than being built on first use: every machine that
writes vectors into one database must produce identical vectors, and a build from whatever
packages happen to be installed (and whatever onnxruntime happens to compute) would differ
from machine to machine. Its sha256 is pinned here and checked at load.

Tokenising is most of the cost, so texts are cut first (``static_text``) and tokenised per word
through a cache (``RunTokenizer``): BERT's pre-tokeniser splits at whitespace and punctuation, so
a word's WordPiece ids do not depend on its neighbours.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from server.embeddings.base import EmbeddingError, Vectors, empty_vectors, normalize_rows, read_pinned
from server.embeddings.text import header

DATA_DIR = Path(__file__).parent / "data"
STATIC_TABLE_PATH = DATA_DIR / "static-minilm-code.npy"
STATIC_SCALES_PATH = DATA_DIR / "static-minilm-code.scales.npy"
STATIC_MANIFEST_PATH = DATA_DIR / "static-minilm-code.json"
STATIC_TABLE_SHA256 = "b74c45fd0446866fedb359f863e8044af0f3c33180525dc06d48f25e418643fe"
STATIC_SCALES_SHA256 = "162f54eeb99a28b2c76d9800bfd573b85a89ff63d5fa57bedc237cb5fa60ba57"
STATIC_EMBEDDER_NAME = "static:minilm-code-v1"
TOKENIZER_PATH = DATA_DIR / "tokenizer.json"
STATIC_CONTENT_CHARS = 300  # of the chunk read after the header (300 beat 1,000 on the dev set)
CLS_ID, SEP_ID = 101, 102
_CACHE_LIMIT = 100_000  # distinct words remembered (~20 MB; see server/indexer/tokens.py)
_PRINTABLE_ASCII = re.compile(r"[ -~\t\n\r]*")  # fullmatch: BERT's normaliser changes nothing but case
_ASCII_WORDS = re.compile(r"[a-z0-9]+|[!-/:-@\[-`{-~]")  # after lower(): words, and punctuation alone
_BERT_SPACE = re.compile(r"[ \t\n\r]+")  # whitespace to BERT and to Python alike


def static_text(rel_path: str, symbol: str | None, content: str, content_chars: int = STATIC_CONTENT_CHARS) -> str:
    """The static tier's input: ``"<rel_path> <symbol>\\n"`` + the chunk's first ~300 characters."""
    if len(content) > content_chars:
        window = (content_chars - 40, content_chars)
        cut = max(content.rfind(" ", *window), content.rfind("\n", *window))  # do not end inside a word
        content = content[: cut if cut > 0 else content_chars]
    return f"{header(rel_path, symbol)}\n{content}"


class RunTokenizer:
    """WordPiece ids of a text, equal to the real tokenizer's, from a cache of words. Thread-safe.

    BERT's normaliser and pre-tokeniser never join characters across whitespace, and on printable
    ASCII they are simple: lower-case, a word is a run of letters and digits, every other printable
    character (`_` included) is a word of its own, space, tab, CR and LF separate. So a printable
    ASCII run's words are found by one regular expression and looked up in the cache; any other
    run (accents, other scripts, control characters) is cached and encoded whole, as it stands.
    Only words never seen before reach the tokenizer, in one `encode_batch` per text.
    """

    def __init__(self, tokenizer_path: Path = TOKENIZER_PATH) -> None:
        try:
            self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # tokenizers raises plain Exception
            raise EmbeddingError(f"Cannot load the tokenizer {tokenizer_path}: {exc}") from exc
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._cache: dict[str, tuple[int, ...]] = {}

    def ids(self, text: str) -> list[int]:
        """Token ids without [CLS]/[SEP], equal to the real tokenizer's for the same text."""
        if _PRINTABLE_ASCII.fullmatch(text):
            words = _ASCII_WORDS.findall(text.lower())
        else:
            words = []
            for run in _BERT_SPACE.split(text):
                if _PRINTABLE_ASCII.fullmatch(run):
                    words.extend(_ASCII_WORDS.findall(run.lower()))
                elif run:
                    words.append(run)  # never equal to an ASCII word: it holds another character
        cache = self._cache
        try:  # the common case: every word known, mapped in C
            return list(chain.from_iterable(map(cache.__getitem__, words)))
        except KeyError:
            pass
        known = {word: cache.get(word) for word in words}
        missing = [word for word, ids in known.items() if ids is None]
        encoded = self._tokenizer.encode_batch(missing, add_special_tokens=False)
        found = {word: tuple(e.ids) for word, e in zip(missing, encoded, strict=True)}
        local = {word: found[word] if ids is None else ids for word, ids in known.items()}
        if len(cache) + len(found) > _CACHE_LIMIT:
            cache.clear()
        cache.update(found)  # dict updates are atomic under the GIL
        return list(chain.from_iterable(map(local.__getitem__, words)))


def _verified_array(path: Path, sha256: str) -> np.ndarray:
    read_pinned(path, sha256, what="static embedding table", remedy="Reinstall codebase-mcp.")
    # Memory-mapped: cheap in every chunking process; pages are shared by the OS.
    array: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
    return array


class StaticEmbedder:
    """Static token-embedding model: ``embed(texts)`` → float32 (n, dimension), L2-normalised rows.

    Synchronous and thread-safe; load it once per process (it memory-maps the table).
    """

    def __init__(
        self,
        *,
        table_path: Path = STATIC_TABLE_PATH,
        scales_path: Path = STATIC_SCALES_PATH,
        table_sha256: str = STATIC_TABLE_SHA256,
        scales_sha256: str = STATIC_SCALES_SHA256,
        tokenizer_path: Path = TOKENIZER_PATH,
    ) -> None:
        self._table = _verified_array(table_path, table_sha256)
        self._scales = np.asarray(_verified_array(scales_path, scales_sha256), dtype=np.float32)
        if self._table.ndim != 2 or self._scales.shape != (self._table.shape[0],):
            raise EmbeddingError(
                f"Static table {table_path} has shape {self._table.shape} and scales {self._scales.shape}"
            )
        self._tokens = RunTokenizer(tokenizer_path)
        self.name = STATIC_EMBEDDER_NAME

    @classmethod
    def from_arrays(
        cls, table: np.ndarray, scales: np.ndarray, tokenizer_path: Path = TOKENIZER_PATH
    ) -> StaticEmbedder:
        """An unpinned model from in-memory arrays (distillation and its experiments)."""
        self = cls.__new__(cls)
        self._table, self._scales = table, np.asarray(scales, dtype=np.float32)
        self._tokens = RunTokenizer(tokenizer_path)
        self.name = "static:unpinned"
        return self

    @property
    def dimension(self) -> int:
        return int(self._table.shape[1])

    @property
    def vocabulary_size(self) -> int:
        return int(self._table.shape[0])

    def token_ids(self, text: str) -> list[int]:
        """[CLS] + the text's WordPiece ids + [SEP], as the table was fitted on."""
        return [CLS_ID, *self._tokens.ids(text), SEP_ID]

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return empty_vectors(self.dimension)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        table, scales = self._table, self._scales
        for i, text in enumerate(texts):
            index = np.asarray(self.token_ids(text), dtype=np.int64)
            # One small gemv per text: ~20 µs for 170 tokens, far cheaper than a batched segment sum.
            out[i] = scales[index] @ table[index].astype(np.float32)
        return normalize_rows(out)


def manifest(path: Path = STATIC_MANIFEST_PATH) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
