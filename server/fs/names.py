"""File names as stored and shown: any byte string made into safe, reversible text.

POSIX file names are bytes. Python hands undecodable ones over with lone surrogates
(surrogateescape), which PostgreSQL rejects ("surrogates not allowed"), and names may also hold
newlines, terminal escapes or bidirectional overrides that garble a listing or a log line. Such a
name is stored and shown escaped:

* ``\\\\`` stands for one backslash;
* ``\\xHH`` stands for the raw byte 0xHH. It is used for every byte that is not valid UTF-8,
  and for each UTF-8 byte of a character that is a control (C0, DEL, C1), a format character
  (bidi overrides, zero-width characters), a line or paragraph separator or a lone surrogate;
* every other character stands for itself, so ordinary names (``src/café.py``) are unchanged.

`unescape_name(escape_name(n)) == n` for every name; `unescape_name` returns the ``str`` that
`os` functions take (surrogateescape-decoded bytes). Slashes are never escaped, so an escaped
path has the same components as the raw one.
"""

from __future__ import annotations

import os
import re
import unicodedata

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2})")


def _needs_escape(char: str) -> bool:
    return char == "\\" or unicodedata.category(char) in _UNSAFE_CATEGORIES


def escape_name(name: str) -> str:
    """An OS path (str, possibly with surrogateescape'd bytes) as safe, reversible text."""
    if name.isascii() and name.isprintable() and "\\" not in name:
        return name  # the common case, without any work
    raw = os.fsencode(name)
    out: list[str] = []
    index = 0
    while index < len(raw):
        char, width = _next_char(raw, index)
        if char is None or _needs_escape(char):
            if char == "\\":
                out.append("\\\\")
            else:
                out.extend(f"\\x{byte:02x}" for byte in raw[index : index + width])
        else:
            out.append(char)
        index += width
    return "".join(out)


def _next_char(raw: bytes, index: int) -> tuple[str | None, int]:
    """The UTF-8 character at `index` and its width; (None, 1) for a byte that starts none."""
    lead = raw[index]
    width = 1 if lead < 0x80 else 2 if 0xC2 <= lead < 0xE0 else 3 if 0xE0 <= lead < 0xF0 else 4 if lead < 0xF5 else 0
    if width == 0:
        return None, 1
    try:
        return raw[index : index + width].decode("utf-8"), width
    except UnicodeDecodeError:
        return None, 1


def unescape_name(text: str) -> str:
    """The OS path (str for `os` functions) that `escape_name` turned into `text`."""
    if "\\" not in text:
        return text
    out = bytearray()
    index = 0
    for match in _ESCAPE.finditer(text):
        out += text[index : match.start()].encode("utf-8", "surrogateescape")
        token = match.group(1)
        out += b"\\" if token == "\\" else bytes([int(token[1:], 16)])
        index = match.end()
    out += text[index:].encode("utf-8", "surrogateescape")
    return os.fsdecode(bytes(out))


def is_safe_text(text: str) -> bool:
    """True when `text` can be stored in PostgreSQL as is (no lone surrogates, no NUL)."""
    return "\x00" not in text and not any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)
