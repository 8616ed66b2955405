"""The shipped static model: pinned table, shape, normalisation, tokenizer equivalence, text form."""

from __future__ import annotations

import shutil
import sysconfig
import threading
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from server.embeddings import EmbeddingError
from server.embeddings.distill_corpus import RESERVED
from server.embeddings.static import (
    STATIC_CONTENT_CHARS,
    STATIC_MANIFEST_PATH,
    STATIC_SCALES_SHA256,
    STATIC_TABLE_PATH,
    STATIC_TABLE_SHA256,
    TOKENIZER_PATH,
    RunTokenizer,
    StaticEmbedder,
    manifest,
    static_text,
)

pytestmark = pytest.mark.unit

JSON_LOADER = """def read_config(path):
    import json
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
"""
UNRELATED = """def factorial(n):
    result = 1
    for i in range(2, n + 1):
        result *= i
    return result
"""


@pytest.fixture(scope="module")
def model() -> StaticEmbedder:
    return StaticEmbedder()


def stdlib_texts(count: int) -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(stdlib.glob("*.py"))[:count]:
        texts.append(path.read_text(encoding="utf-8", errors="replace")[:20_000])
    return texts


def test_shape_dtype_and_normalised_rows(model: StaticEmbedder) -> None:
    vectors = model.embed(["hello world", JSON_LOADER, "ünïcödé ✓", ""])
    assert model.dimension == manifest()["dimension"]
    assert model.vocabulary_size == 30522
    assert vectors.shape == (4, model.dimension)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert model.embed([]).shape == (0, model.dimension)


def test_batching_does_not_change_vectors(model: StaticEmbedder) -> None:
    texts = stdlib_texts(12)
    together = model.embed(texts)
    one_by_one = np.vstack([model.embed([t]) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-6)


def test_threads_share_one_model(model: StaticEmbedder) -> None:
    texts = stdlib_texts(16)
    expected = model.embed(texts)
    results: dict[int, np.ndarray] = {}

    def work(k: int) -> None:
        results[k] = model.embed(texts[k::4])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for k in range(4):
        np.testing.assert_allclose(results[k], expected[k::4], atol=1e-6)


def test_code_query_ranks_the_json_loader_first(model: StaticEmbedder) -> None:
    query, loader, unrelated = model.embed(
        ["parse json file", static_text("app/config.py", "read_config", JSON_LOADER), UNRELATED]
    )
    assert float(query @ loader) > float(query @ unrelated)


def test_tampered_table_is_refused(tmp_path: Path) -> None:
    tampered = tmp_path / "table.npy"
    shutil.copyfile(STATIC_TABLE_PATH, tampered)
    data = bytearray(tampered.read_bytes())
    data[-100] ^= 0x01
    tampered.write_bytes(bytes(data))
    with pytest.raises(EmbeddingError) as caught:
        StaticEmbedder(table_path=tampered)
    assert str(tampered) in str(caught.value) and STATIC_TABLE_SHA256 in str(caught.value)


def test_manifest_matches_the_pinned_files() -> None:
    info = manifest(STATIC_MANIFEST_PATH)
    assert info["sha256"] == {"table": STATIC_TABLE_SHA256, "scales": STATIC_SCALES_SHA256}
    assert info["shape"] == [30522, info["dimension"]]
    names = {entry.split(":", 1)[1].split("==")[0].lower() for entry in info["training_packages"]}
    assert names and not names & RESERVED
    assert STATIC_TABLE_PATH.stat().st_size < 25_000_000


EDGE_CASES = [
    "naïve café — Ünïcode façade",
    "中文字符和code混合 mixed",
    "tabs\tand\nnewlines\r\nand  double  spaces",
    "non\u00a0breaking and zero\u200bwidth and\x1cfile\x1dseparators",
    "emoji 🎉🚀 and symbols ©®™ ≤≥ → ⇒",
    "camelCaseIdentifier snake_case_name SCREAMING_CASE __dunder__ x1y2z3",
    "url https://example.com/a/b?c=d&e=f#g and e-mail foo.bar@baz.qux",
    "\u0130stanbul İİ ß ﬁ Ω",
    "vertical\x0btab form\x0cfeed next\x85line line\u2028separator del\x7fete nul\x00byte",
    "ascii run,then café; then_ascii again: x=1 # naïve",
    "a" * 99 + " " + "b" * 100 + " " + "c" * 101 + " " + "d" * 101 + "é",  # WordPiece's 100-character limit
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ 0123456789 ABCxyz",
    'fn main() { println!("{}", x.len()); } // Rust',
    '#include <stdio.h>\nint main(void) { return printf("%d\\n", argc) > 0; }',
    "const f = async (a, b) => a ?? b?.c; // TypeScript `${x}`",
    'msgid "Welcome"\nmsgstr "Добро пожаловать"',
    "",
    "   ",
]


def test_run_tokenizer_matches_the_real_tokenizer() -> None:
    real = Tokenizer.from_file(str(TOKENIZER_PATH))
    real.no_truncation()
    real.no_padding()
    runs = RunTokenizer()
    for text in [*EDGE_CASES, *stdlib_texts(30)]:
        assert runs.ids(text) == real.encode(text, add_special_tokens=False).ids, text[:80]
        assert runs.ids(text) == real.encode(text, add_special_tokens=False).ids  # from the cache now


def test_static_text_keeps_the_header_and_cuts_the_content() -> None:
    long = "word " * 1000
    text = static_text("pkg/mod.py", "Parser.parse", long)
    head, body = text.split("\n", 1)
    assert head == "pkg/mod.py Parser.parse"
    assert STATIC_CONTENT_CHARS - 40 <= len(body) <= STATIC_CONTENT_CHARS
    assert not body.endswith("wor")  # cut between words
    assert static_text("README.md", None, "short").split("\n") == ["README.md", "short"]
