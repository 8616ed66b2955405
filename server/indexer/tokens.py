"""Code-aware tokens for PostgreSQL full-text search.

The documents are indexed as `to_tsvector('simple', code_tokens(text))` and queries are built from
`query_tokens(query)`, so both sides follow one rule:

* A word is a maximal run of letters, digits and underscores (Unicode-aware); everything else
  (punctuation, operators, whitespace) only separates words.
* Every word yields its *whole* form: lower-cased with underscores removed, because PostgreSQL's
  parser would otherwise cut `get_user` at the underscore (`IndexingJobCreate` → `indexingjobcreate`,
  `get_user` → `getuser`, `__init__` → `init`).
* A word made of several parts also yields each part, lower-cased. Parts are cut at underscores,
  at lower→upper changes of ASCII case, before the last capital of an acronym followed by a lower-case
  letter, and between letters and digits: `get_HTTPResponse2` → `gethttpresponse2 get httpresponse2 http
  response 2` (an underscore-separated piece that itself has several parts is also kept whole).
* Natural-language words are stemmed (English Snowball): a word with one part yields its stem
  (`headers` → `header`, `parsed` → `pars`), and so does each part of a longer word, while the whole
  form of a multi-part identifier stays exact (`parse_header_links` → `parseheaderlinks pars header
  link`), so "parsed link headers" reaches `parse_header_links` and the identifier still matches
  itself exactly. Only ASCII letters are stemmed; digits and other scripts are kept as they are.
* Tokens longer than `MAX_TOKEN_CHARS` (hashes, base64 blobs) are dropped, and a document yields at
  most `MAX_TOKENS` tokens, well inside PostgreSQL's tsvector limits (1 MB, 2 KB per lexeme).
"""

from __future__ import annotations

import re

import Stemmer

MAX_TOKENS = 20_000
MAX_TOKEN_CHARS = 64
# Words remembered per process. Chunking workers hold three such caches (here, fulltext, static): at
# 50K each a worker peaks near 200 MB on the standard corpus, against 320 MB at 200–500K, for the
# same CPU time within noise (bench/index_bench.py).
_CACHE_LIMIT = 50_000

_WORD = re.compile(r"\w+")
# Case/digit parts inside one underscore-free piece: "HTTPResponse2" -> HTTP, Response, 2.
_PART = re.compile(r"[A-Z]+(?=[A-Z][^\W\d_A-Z])|[A-Z]?[^\W\d_A-Z]+|[A-Z]+|\d+")
_PLAIN = re.compile(r"[a-z]+|\d+")
_STEMMABLE = re.compile(r"[a-z]{3,}")
# PyStemmer: Snowball's C stemmers. The pure-Python `snowballstemmer` generates the same algorithm
# (tests/unit/test_tokens.py checks them word for word) at ~50x the CPU time, most of a chunking
# worker's full-text work. Its own cache is off: `code_tokens` caches whole words.
_stemmer = Stemmer.Stemmer("english", 0)

# Text is split as UTF-8 bytes, the fastest way in CPython: ASCII punctuation and control
# characters become spaces and `bytes.split` finds the words in C. Non-ASCII punctuation glued to a
# word is separated when that word is first expanded, once per distinct word thanks to the cache.
_SEPARATORS = bytes(c if c >= 128 or chr(c).isalnum() or c == ord("_") else 32 for c in range(256))

_cache: dict[bytes, str] = {}


def stem(token: str) -> str:
    """English stem of a lower-case ASCII word; other tokens unchanged."""
    return _stemmer.stemWord(token) if _STEMMABLE.fullmatch(token) else token


def _expand_word(word: str) -> str:
    """All tokens of one word (letters, digits, underscores), space-separated; "" for none."""
    whole = word.replace("_", "").lower()
    if not whole or len(whole) > MAX_TOKEN_CHARS:
        return ""
    if _PLAIN.fullmatch(word):
        return stem(whole)
    pieces = [p for p in word.split("_") if p]
    parts_of = [_PART.findall(piece) for piece in pieces]
    if sum(len(parts) for parts in parts_of) <= 1:
        return stem(whole)  # one part only: a plain word in another case (`Headers`, `HTTP`)
    tokens = [whole]
    for piece, parts in zip(pieces, parts_of, strict=True):
        if len(parts) > 1 and len(pieces) > 1:
            tokens.append(piece.lower())
        tokens.extend(stem(part.lower()) for part in parts)
    return " ".join(dict.fromkeys(tokens))


def identifier_lexeme(name: str) -> str:
    """The token a dotted identifier's part (`register_blueprint`, `push`) is indexed under."""
    expanded = _expand_word(name)
    return expanded.split(" ", 1)[0] if expanded else ""


def _expand_raw(raw: bytes) -> str:
    """Tokens of one space-free run of UTF-8 (usually one word)."""
    text = raw.decode("utf-8", "replace")
    words = _WORD.findall(text)
    if len(words) == 1 and words[0] == text:
        return _expand_word(text)
    return " ".join(filter(None, map(_expand_word, words)))


def _tokens_of(raw: bytes) -> str:
    expanded = _cache.get(raw)
    if expanded is None:
        expanded = _cache[raw] = _expand_raw(raw)
    return expanded


def _words(text: str) -> list[bytes]:
    return text.encode("utf-8", "surrogatepass").translate(_SEPARATORS).split()


def code_tokens(text: str) -> str:
    """Space-separated lower-case tokens of `text` for `to_tsvector('simple', ...)`."""
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()
    # Each word yields at least one token (or none), so MAX_TOKENS words are enough.
    words = _words(text)[:MAX_TOKENS]
    # Mapping through the cache runs in C; only words not seen before take the Python path.
    try:
        out = " ".join(filter(None, map(_cache.__getitem__, words)))
    except KeyError:
        for word in set(words).difference(_cache):
            _cache[word] = _expand_raw(word)
        try:
            out = " ".join(filter(None, map(_cache.__getitem__, words)))
        except KeyError:  # another thread cleared the cache meanwhile
            out = " ".join(filter(None, map(_tokens_of, words)))
    if out.count(" ") >= MAX_TOKENS:
        out = " ".join(out.split(" ", MAX_TOKENS)[:MAX_TOKENS])
    return out


def query_tokens(query: str) -> list[str]:
    """Distinct tokens of a search query, in order of first appearance, by the same rule."""
    seen: dict[str, None] = {}
    for word in _words(query):
        for token in _tokens_of(word).split():
            seen.setdefault(token, None)
    return list(seen)
