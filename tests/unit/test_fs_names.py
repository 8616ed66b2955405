"""Stored file names: escaped, reversible, safe for PostgreSQL and for terminals."""

from __future__ import annotations

import os
import random
import unicodedata

import pytest

from server.fs.names import escape_name, is_safe_text, unescape_name

pytestmark = pytest.mark.unit

HOSTILE = {
    os.fsdecode(b"\xff.py"): "\\xff.py",
    os.fsdecode(b"caf\xe9.py"): "caf\\xe9.py",  # Latin-1, not UTF-8
    "line\nbreak.py": "line\\x0abreak.py",
    "tab\there.py": "tab\\x09here.py",
    "esc\x1b[31mred.py": "esc\\x1b[31mred.py",
    "rtl\u202egnp.py": "rtl\\xe2\\x80\\xaegnp.py",  # a bidi override that would show "py.png"
    "zero\u200bwidth.py": "zero\\xe2\\x80\\x8bwidth.py",
    "c1\u0085.py": "c1\\xc2\\x85.py",
    "back\\slash.py": "back\\\\slash.py",
    "literal\\xff.py": "literal\\\\xff.py",  # looks like an escape, is not one
}
PLAIN = ["src/app.py", "café/naïve.py", "日本語/ファイル.rs", "-rf.py", "*.py", "[abc].py", "?.py", "a b.py", "%41.py"]


@pytest.mark.parametrize(("raw", "stored"), HOSTILE.items())
def test_hostile_names_are_escaped_and_come_back(raw: str, stored: str) -> None:
    assert escape_name(raw) == stored
    assert unescape_name(stored) == raw
    assert is_safe_text(stored) and stored.isprintable()


@pytest.mark.parametrize("name", PLAIN)
def test_ordinary_names_are_unchanged(name: str) -> None:
    assert escape_name(name) == name
    assert unescape_name(name) == name


def test_slashes_are_kept_so_components_match() -> None:
    raw = os.fsdecode(b"dir\xfe/sub\n/file\xff.py")
    stored = escape_name(raw)
    assert stored.count("/") == 2
    assert [unescape_name(p) for p in stored.split("/")] == raw.split("/")


def test_any_byte_string_round_trips() -> None:
    rng = random.Random(1234)
    alphabet = [*range(1, 256)]
    alphabet.remove(ord("/"))
    for _ in range(3000):
        raw = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
        name = os.fsdecode(raw)
        stored = escape_name(name)
        assert os.fsencode(unescape_name(stored)) == raw, raw
        assert is_safe_text(stored)
        assert all(unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in stored), stored
        stored.encode("utf-8")  # strict: what PostgreSQL accepts


def test_safe_text() -> None:
    assert is_safe_text("fine.py")
    assert not is_safe_text("nul\x00.py")
    assert not is_safe_text(os.fsdecode(b"\xff"))
