"""Learns the transformer tier's query adapter (numpy only): ``normalize(W·q)`` for queries.

Stored chunk vectors stay as they are; only the query side moves, so nothing is re-embedded.

Recipe (chosen on the dev set of ``server.embeddings.devset``; figures in the manifest):

1. Pairs: in every *training* package of ``distill_corpus`` (never a reserved benchmark library),
   each function or method with a doc comment (Python docstring; ``//``, ``///`` or ``/* */``
   comment in front of a JavaScript, TypeScript, Rust or C definition) gives a query, the comment's
   first sentence, and a document, the chunk with the comment removed, in its transformer-tier form
   (``embedding_text`` at the product's token length); at most ``per_package`` of them, plus
   ``negatives`` function chunks without a comment as further documents.
2. Loss: InfoNCE with temperature ``τ``: each query's softmax over its own package's documents,
   ``-log softmax(normalize(W·q)·D / τ)[answer]``, plus ``λ‖W − I‖²``; ``W = I`` at the start.
3. Optimiser: Adam, each step over ``packages_per_step`` packages drawn at random; the step count,
   ``τ`` and ``λ`` were picked by the dev set's MRR@10.

``python -m server.embeddings.adapt --cache DIR`` writes ``data/query-adapter-minilm.{npy,json}``
(~10-20 minutes on 2 cores, nearly all of it the teacher embedding the training chunks).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from server.embeddings import devset
from server.embeddings.distill_corpus import PACKAGES, RESERVED, CodeChunk, load_packages
from server.embeddings.local import LocalEmbedder
from server.embeddings.query_adapter import ADAPTER_PATH
from server.embeddings.text import embedding_text

_FUNCTION_KINDS = frozenset({"function", "method"})


@dataclass(frozen=True)
class Recipe:
    teacher_length: int = 64  # the product's DEFAULT_MAX_LENGTH
    per_package: int = 250  # queries per package at most
    negatives: int = 60  # documents without a doc comment per package, as negatives
    temperature: float = 0.05
    ridge: float = 0.01  # λ on ‖W − I‖², per query (the loss is a mean)
    learning_rate: float = 1e-3
    steps: int = 50
    packages_per_step: int = 12  # each step's loss covers this many packages, drawn at random (0: all)
    min_words: int = 4
    seed: int = 0


@dataclass
class Pairs:
    """Per package: its query texts and answers (index into that package's documents), and documents."""

    packages: list[str]
    queries: list[list[str]]
    answers: list[list[int]]
    documents: list[list[str]]


def doc_of(chunk: CodeChunk) -> tuple[str, str] | None:
    """(first sentence of its doc comment, chunk without it), or None."""
    if chunk.language == "python":
        return devset._python_doc(chunk)
    return devset._js_doc(chunk)


def mine(packages: dict[str, list[CodeChunk]], recipe: Recipe) -> Pairs:
    rng = np.random.default_rng(recipe.seed)
    out = Pairs([], [], [], [])
    for name in sorted(packages):
        if name.split("==")[0].lower() in RESERVED:
            raise ValueError(f"{name} is reserved for the quality benchmark")
        with_doc: list[tuple[str, str]] = []
        without: list[str] = []
        seen: set[str] = set()
        for chunk in packages[name]:
            if chunk.kind not in _FUNCTION_KINDS:
                continue
            found = doc_of(chunk)
            content = found[1] if found else chunk.content
            document = embedding_text(chunk.rel_path, chunk.symbol, content)
            if document in seen:
                continue
            seen.add(document)
            if found and len(found[0].split()) >= recipe.min_words:
                with_doc.append((found[0], document))
            else:
                without.append(document)
        if not with_doc:
            continue
        order = rng.permutation(len(with_doc))[: recipe.per_package]
        chosen = [with_doc[i] for i in order]
        rest = [without[i] for i in rng.permutation(len(without))[: recipe.negatives]]
        out.packages.append(name)
        out.queries.append([q for q, _ in chosen])
        out.answers.append(list(range(len(chosen))))
        out.documents.append([d for _, d in chosen] + rest)
    return out


@dataclass
class Embedded:
    """Teacher vectors of the pairs, per package: queries (n, DIM), documents (m, DIM), answers (n,)."""

    queries: list[np.ndarray]
    documents: list[np.ndarray]
    answers: list[np.ndarray]


def embed(pairs: Pairs, teacher: LocalEmbedder) -> Embedded:
    out = Embedded([], [], [])
    for qs, ds, ans in zip(pairs.queries, pairs.documents, pairs.answers, strict=True):
        out.queries.append(np.asarray(teacher.embed_sync(qs), dtype=np.float32))
        out.documents.append(np.asarray(teacher.embed_sync(ds), dtype=np.float32))
        out.answers.append(np.asarray(ans, dtype=np.int64))
    return out


def _normalize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(x, axis=1, keepdims=True).clip(1e-9)
    return x / norms, norms


def loss_and_grad(w: np.ndarray, data: Embedded, temperature: float, ridge: float) -> tuple[float, np.ndarray]:
    """Mean InfoNCE loss over every query (softmax over its package's documents) + ridge, and dL/dW."""
    grad = np.zeros(w.shape, dtype=np.float64)
    total = 0.0
    count = sum(len(a) for a in data.answers)
    w32 = w.astype(np.float32)  # float32 products: 3-4x faster, precise enough for a gradient
    for q, d, answers in zip(data.queries, data.documents, data.answers, strict=True):
        z = q @ w32.T  # (n, DIM)
        u, norms = _normalize(z)
        logits = (u @ d.T) / temperature
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        rows = np.arange(len(answers))
        total += float(-np.log(p[rows, answers].astype(np.float64).clip(1e-30)).sum())
        p[rows, answers] -= 1.0
        g_u = (p @ d) / temperature  # dL/du
        g_z = (g_u - u * (g_u * u).sum(axis=1, keepdims=True)) / norms  # through the normalisation
        grad += g_z.T @ q
    delta = w - np.eye(w.shape[0], dtype=w.dtype)
    loss = total / count + ridge * float((delta * delta).sum())
    return loss, grad / count + 2.0 * ridge * delta


class Adam:
    def __init__(self, shape: tuple[int, ...], lr: float, b1: float = 0.9, b2: float = 0.999) -> None:
        self.m = np.zeros(shape)
        self.v = np.zeros(shape)
        self.lr, self.b1, self.b2, self.t = lr, b1, b2, 0

    def step(self, param: np.ndarray, grad: np.ndarray) -> np.ndarray:
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * grad
        self.v = self.b2 * self.v + (1 - self.b2) * grad * grad
        m_hat = self.m / (1 - self.b1**self.t)
        v_hat = self.v / (1 - self.b2**self.t)
        return param - self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)


def train(
    data: Embedded, recipe: Recipe, *, checkpoints: Sequence[int] = ()
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """W after ``recipe.steps`` steps, and W at each checkpoint step."""
    w = np.eye(data.queries[0].shape[1], dtype=np.float64)
    adam = Adam(w.shape, recipe.learning_rate)
    rng = np.random.default_rng(recipe.seed)
    saved: dict[int, np.ndarray] = {}
    n = len(data.queries)
    for step in range(1, recipe.steps + 1):
        batch = data
        if 0 < recipe.packages_per_step < n:
            chosen = rng.choice(n, recipe.packages_per_step, replace=False)
            batch = Embedded(*([part[i] for i in chosen] for part in (data.queries, data.documents, data.answers)))
        _, grad = loss_and_grad(w, batch, recipe.temperature, recipe.ridge)
        w = adam.step(w, grad)
        if step in checkpoints:
            saved[step] = w.astype(np.float32)
    return w.astype(np.float32), saved


def apply(w: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    return _normalize(np.asarray(vectors, dtype=np.float32) @ w.T)[0]


@dataclass
class Dev:
    dev: devset.DevSet
    queries: np.ndarray
    docs: np.ndarray
    bm25: devset.Scores  # with the unadapted cosine; only its text part is reused


def dev_data(cache: Path, teacher: LocalEmbedder, vectors: Path | None = None) -> Dev:
    """The dev set and its teacher vectors (read from / written to ``vectors`` when given)."""
    dev = devset.build(load_packages(cache, "dev"))
    if vectors is not None and vectors.exists():
        z = np.load(vectors)
        queries, docs = z["queries"], z["docs"]
    else:
        queries = np.asarray(teacher.embed_sync(dev.queries), dtype=np.float32)
        texts = [embedding_text(d.rel_path, d.symbol, d.content) for d in dev.docs]
        docs = np.asarray(teacher.embed_sync(texts), dtype=np.float32)
        if vectors is not None:
            np.savez(vectors, queries=queries, docs=docs)
    scores = devset.score(dev, queries, docs, lambda d: f"{d.rel_path} {d.symbol or ''}\n{d.content}")
    return Dev(dev, queries, docs, scores)


def dev_mrr(dev: Dev, w: np.ndarray | None) -> dict[str, float]:
    """Dev MRR@10 of the transformer alone and blended 0.85·cosine + 0.15·BM25, with W (None: without)."""
    q = dev.queries if w is None else apply(w, dev.queries)
    parts = [(qs, ds, q[qs] @ dev.docs[ds].T, text) for qs, ds, _, text in dev.bm25.parts]
    scores = devset.Scores(parts)
    return {"transformer": devset.evaluate(dev.dev, scores, 1.0), "0.85+bm25": devset.evaluate(dev.dev, scores, 0.85)}


def write(out: Path, w: np.ndarray, info: dict[str, object]) -> str:
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, w.astype(np.float32))
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    out.with_suffix(".json").write_text(json.dumps({**info, "sha256": sha}, indent=2) + "\n")
    return sha


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--cache", type=Path, required=True, help="where packages are downloaded")
    parser.add_argument("--models-dir", type=Path, default=None, help="where the s8 teacher is cached")
    parser.add_argument("--out", type=Path, default=ADAPTER_PATH)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--vectors", type=Path, default=None, help="directory caching the teacher's vectors")
    args = parser.parse_args(argv)
    recipe = Recipe()
    started = time.monotonic()
    teacher = LocalEmbedder(max_length=recipe.teacher_length, threads=args.threads, models_dir=args.models_dir)
    teacher.load_sync()
    assert teacher.loaded_model is not None and teacher.loaded_model.startswith("s8:"), teacher.loaded_model
    pairs = mine(load_packages(args.cache, "train"), recipe)
    if args.vectors is not None:
        args.vectors.mkdir(parents=True, exist_ok=True)
    data = load_or_embed(args.vectors / "train.npz" if args.vectors else None, pairs, teacher)
    dev = dev_data(args.cache, teacher, args.vectors / "dev.npz" if args.vectors else None)
    w, _ = train(data, recipe)
    training = [f"{reg}:{name}=={ver}" for reg, name, ver, role in PACKAGES if role == "train"]
    info = {
        "recipe": asdict(recipe),
        "teacher": "all-MiniLM-L6-v2 s8 (server.embeddings.derive); queries as they are, documents in the "
        "embedding_text form",
        "training_packages": training,
        "pairs": {p: len(q) for p, q in zip(pairs.packages, pairs.queries, strict=True)},
        "documents": sum(len(d) for d in pairs.documents),
        "dev": {
            "packages": sorted(set(dev.dev.groups)),
            "queries": len(dev.dev.queries),
            "mrr@10 without": {k: round(v, 4) for k, v in dev_mrr(dev, None).items()},
            "mrr@10 with": {k: round(v, 4) for k, v in dev_mrr(dev, w).items()},
        },
        "seconds": round(time.monotonic() - started),
    }
    sha = write(args.out, w, info)
    print(json.dumps({**info, "sha256": sha}, indent=2))


def load_or_embed(path: Path | None, pairs: Pairs, teacher: LocalEmbedder) -> Embedded:
    """The pairs' teacher vectors (read from / written to ``path`` when given)."""
    if path is not None and path.exists():
        z = np.load(path)
        n = len(pairs.packages)
        return Embedded([z[f"q{i}"] for i in range(n)], [z[f"d{i}"] for i in range(n)], [z[f"a{i}"] for i in range(n)])
    data = embed(pairs, teacher)
    if path is not None:
        arrays = {f"q{i}": q for i, q in enumerate(data.queries)}
        arrays |= {f"d{i}": d for i, d in enumerate(data.documents)}
        arrays |= {f"a{i}": a for i, a in enumerate(data.answers)}
        np.savez(path, **arrays)  # type: ignore[arg-type]
    return data


if __name__ == "__main__":
    main()
