"""Dev retrieval set for choosing the static model's recipe: doc comment → function.

Built only from the held-out training-side packages (``role == "dev"`` in distill_corpus), never
from the libraries reserved for the quality benchmark. A query is the first sentence of a
function's docstring (Python) or leading comment (JavaScript); its document is the function's
chunk with that text removed. Every function chunk of the package is a candidate.
"""

from __future__ import annotations

import ast
import math
import re
import textwrap
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from server.embeddings.distill_corpus import CodeChunk

_FUNCTION_KINDS = frozenset({"function", "method"})
_SENTENCE = re.compile(r"^(.+?[.!?])(?:\s|$)", re.S)
_IDENT_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_STOP = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "if", "in", "into", "is", "it", "of", "on",
     "or", "that", "the", "this", "to", "with", "return", "returns", "given", "its", "which", "will", "when"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class DevDoc:
    package: str
    rel_path: str
    symbol: str | None
    content: str  # doc text removed


@dataclass(frozen=True, slots=True)
class DevSet:
    docs: list[DevDoc]
    queries: list[str]
    answers: list[int]  # index into docs
    groups: list[str]  # package of each query (candidates are that package's docs)


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    match = _SENTENCE.match(text)
    return (match.group(1) if match else text).strip()


def _python_doc(chunk: CodeChunk) -> tuple[str, str] | None:
    """(first docstring sentence, chunk without the docstring) for a Python function chunk."""
    source = textwrap.dedent(chunk.content)
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    func = next((n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)), None)
    if func is None or not func.body:
        return None
    first = func.body[0]
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)):
        return None
    if not isinstance(first.value.value, str) or first.end_lineno is None:
        return None
    lines = source.split("\n")
    stripped = "\n".join(lines[: first.lineno - 1] + lines[first.end_lineno :])
    return _first_sentence(first.value.value), stripped


def _js_doc(chunk: CodeChunk) -> tuple[str, str] | None:
    lines = chunk.content.split("\n")
    comment: list[str] = []
    while lines and lines[0].lstrip().startswith(("//", "/*", "*")):
        comment.append(lines.pop(0).strip().lstrip("/*").strip())
    text = " ".join(c for c in comment if c and not c.startswith("@"))
    return (_first_sentence(text), "\n".join(lines)) if text else None


def build(packages: dict[str, list[CodeChunk]], *, min_words: int = 4) -> DevSet:
    docs: list[DevDoc] = []
    queries: list[str] = []
    answers: list[int] = []
    groups: list[str] = []
    for package, chunks in packages.items():
        for chunk in chunks:
            if chunk.kind not in _FUNCTION_KINDS:
                continue
            if chunk.language == "javascript" and not chunk.rel_path.startswith("modules/"):
                continue  # underscore also ships amd/cjs/bundle copies of every module
            found = _python_doc(chunk) if chunk.language == "python" else _js_doc(chunk)
            content = found[1] if found else chunk.content
            docs.append(DevDoc(package, chunk.rel_path, chunk.symbol, content))
            if found and len(found[0].split()) >= min_words:
                queries.append(found[0])
                answers.append(len(docs) - 1)
                groups.append(package)
    return DevSet(docs, queries, answers, groups)


def words(text: str) -> list[str]:
    """Identifier-split, lower-cased words (``parseJSONFile`` → parse, json, file) without stop words."""
    out = []
    for raw in re.findall(r"[A-Za-z0-9]+", text):
        for part in _IDENT_PART.findall(raw) or [raw]:
            word = part.lower()
            if word not in _STOP and len(word) > 1:
                out.append(word[:-1] if word.endswith("s") and len(word) > 3 else word)  # light stemming
    return out


def bm25(
    query_words: Sequence[list[str]], doc_words: Sequence[list[str]], k1: float = 1.2, b: float = 0.75
) -> np.ndarray:
    """BM25 scores, shape (n_queries, n_docs)."""
    n = len(doc_words)
    df: Counter[str] = Counter(w for d in doc_words for w in set(d))
    lengths = np.array([len(d) for d in doc_words], dtype=np.float64)
    avg = lengths.mean() if n else 1.0
    tfs = [Counter(d) for d in doc_words]
    scores = np.zeros((len(query_words), n))
    for qi, query in enumerate(query_words):
        for word in set(query):
            if word not in df:
                continue
            idf = math.log(1 + (n - df[word] + 0.5) / (df[word] + 0.5))
            tf = np.array([t.get(word, 0) for t in tfs], dtype=np.float64)
            scores[qi] += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * lengths / avg))
    return scores


def mrr_at_10(scores: np.ndarray, answers: Sequence[int]) -> float:
    total = 0.0
    for row, answer in zip(scores, answers, strict=True):
        rank = int((row > row[answer]).sum())
        total += 1.0 / (rank + 1) if rank < 10 else 0.0
    return total / max(len(answers), 1)


@dataclass(frozen=True, slots=True)
class Scores:
    """Per package: (query indices, doc indices, cosine matrix, BM25 matrix normalised per query)."""

    parts: list[tuple[list[int], list[int], np.ndarray, np.ndarray]]


def score(dev: DevSet, query_vectors: np.ndarray, doc_vectors: np.ndarray, doc_text: Callable[[DevDoc], str]) -> Scores:
    parts = []
    for package in sorted(set(dev.groups)):
        qs = [i for i, g in enumerate(dev.groups) if g == package]
        ds = [i for i, d in enumerate(dev.docs) if d.package == package]
        cos = query_vectors[qs] @ doc_vectors[ds].T
        text = bm25([words(dev.queries[i]) for i in qs], [words(doc_text(dev.docs[i])) for i in ds])
        text = text / np.clip(text.max(axis=1, keepdims=True), 1e-9, None)
        parts.append((qs, ds, cos, text))
    return Scores(parts)


def evaluate(dev: DevSet, scores: Scores, weight: float) -> float:
    """MRR@10 over all queries of ``weight·cosine + (1-weight)·BM25/max``."""
    total = 0.0
    for qs, ds, cos, text in scores.parts:
        local = {doc: j for j, doc in enumerate(ds)}
        answers = [local[dev.answers[i]] for i in qs]
        total += mrr_at_10(weight * cos + (1 - weight) * text, answers) * len(qs)
    return total / len(dev.queries)
