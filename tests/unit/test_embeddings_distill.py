"""The distillation's maths and corpus rules (the full run is `python -m server.embeddings.distill`)."""

from __future__ import annotations

import numpy as np
import pytest

from server.embeddings.devset import bm25, mrr_at_10, words
from server.embeddings.distill import Design, fit, quantise
from server.embeddings.distill_corpus import PACKAGES, RESERVED, _usable

pytestmark = pytest.mark.unit


def dense_design(ids: list[list[int]], weights: np.ndarray) -> np.ndarray:
    a = np.zeros((len(ids), weights.size))
    for r, row in enumerate(ids):
        for t in row:
            a[r, t] += weights[t]
    normalised: np.ndarray = a / a.sum(axis=1, keepdims=True)
    return normalised


def test_sparse_products_and_ridge_fit_match_dense_algebra() -> None:
    rng = np.random.default_rng(0)
    vocab, n, dim = 60, 200, 8
    ids = [list(rng.integers(0, vocab - 5, rng.integers(3, 20))) for _ in range(n)]  # 5 never occur
    weights = (rng.random(vocab) + 0.5).astype(np.float32)
    design, a = Design(ids, weights), dense_design(ids, weights)
    e = rng.standard_normal((vocab, dim)).astype(np.float32)
    r = rng.standard_normal((n, dim)).astype(np.float32)
    np.testing.assert_allclose(design.times(e, block=100), a @ e, atol=1e-5)
    np.testing.assert_allclose(design.t_times(r, block=7), a.T @ r, atol=1e-5)

    y = rng.standard_normal((n, dim)).astype(np.float32)
    e0 = rng.standard_normal((vocab, dim)).astype(np.float32)
    gram = a.T @ a
    lam = 0.3 * np.median(np.diag(gram)[np.diag(gram) > 0])
    expected = np.linalg.solve(gram + lam * np.eye(vocab), a.T @ y + lam * e0)
    unused = np.flatnonzero(design.diag == 0)
    (fitted,) = fit(design, y, e0, [0.3])
    np.testing.assert_allclose(fitted, expected, atol=1e-4)
    np.testing.assert_array_equal(fitted[unused], e0[unused])


def test_quantise_keeps_rows_within_half_a_step() -> None:
    table = np.random.default_rng(1).standard_normal((50, 16)).astype(np.float32)
    table[3] = 0.0
    q, scales = quantise(table)
    assert q.dtype == np.int8 and scales.dtype == np.float32
    np.testing.assert_allclose(q * scales[:, None], table, atol=float(scales.max()) / 2 + 1e-7)
    assert not np.any(q[3])


def test_reserved_libraries_never_enter_the_corpus() -> None:
    names = {name.lower() for _, name, _, _ in PACKAGES}
    assert not names & RESERVED
    assert _usable("pkg-1.0/src/parser.py", has_src=False)
    assert not _usable("pkg-1.0/src/_vendor/requests/api.py", has_src=False)
    assert not _usable("pkg-1.0/contrib/django_compat.py", has_src=False)
    assert not _usable("pkg-1.0/lib/lodash-helpers.js", has_src=False)
    assert not _usable("package/dist/index.min.js", has_src=False)
    assert not _usable("package/es/index.js", has_src=True)  # only src/ when a package has one
    assert _usable("package/src/index.ts", has_src=True)


def test_dev_set_scoring_helpers() -> None:
    assert words("parseJSONFile(path) returns the_data") == ["parse", "json", "file", "path", "data"]
    scores = bm25([["json", "file"]], [["json", "file", "read"], ["math", "sum"], ["json"]])
    assert scores[0].argmax() == 0 and scores[0][1] == 0.0
    assert mrr_at_10(np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.1]]), [0, 0]) == pytest.approx((1 + 1 / 2) / 2)
