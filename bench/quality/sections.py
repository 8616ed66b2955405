"""Documentation sections of Markdown and reStructuredText files, and the docs-seeking queries made
from their headings."""

from __future__ import annotations

import random
import re

from bench.quality.model import Section
from bench.quality.text import strip_markup

DOC_SUFFIXES = (".md", ".markdown", ".rst")
# Release notes and boilerplate: their headings are versions and dates, not topics.
_SKIPPED_FILE = re.compile(
    r"(^|/)(change|changes|changelog|history|news|release|releases|authors|contributors|license|licence|copying|"
    r"code_of_conduct|security|funding|support|maintainers|thanks)[^/]*$",
    re.I,
)
_SKIPPED_DIR = re.compile(r"(^|/)(releases|changelog|changes|whatsnew|release-notes|news)/", re.I)
_DOC_DIR = re.compile(r"(^|/)docs?/")
_HIDDEN = re.compile(r"(^|/)\.")
_NUMBERING = re.compile(r"^(\d+\.)+\d*\s+|^\d+\)\s+")
_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}[ \t]*$")
_VERSIONISH = re.compile(r"\d+\.\d+|\b(v\d|version|release)\b|\d{4}-\d{2}", re.I)
GENERIC_HEADINGS = frozenset(
    {
        "usage", "examples", "example", "installation", "install", "installing", "license", "contributing",
        "parameters", "returns", "return", "notes", "note", "see also", "overview", "introduction", "intro",
        "summary", "contents", "changelog", "credits", "authors", "tests", "testing", "features", "requirements",
        "arguments", "methods", "attributes", "properties", "options", "reference", "api", "index", "description",
        "details", "raises", "yields", "warning", "warnings", "todo", "table of contents", "getting started",
        "quickstart", "documentation", "docs", "links", "resources", "community", "support", "acknowledgements",
        "acknowledgments", "sponsors", "backers", "faq", "questions", "api reference", "module contents",
    }
)  # fmt: skip
TEMPLATES = ("how do I {h}", "guide to {h}", "explain {h}", "docs on {h}", "{h} documentation")


def is_rst(path: str) -> bool:
    """reStructuredText: `.rst`, and `.txt` under a doc folder (Django writes its docs so)."""
    low = path.lower()
    return low.endswith(".rst") or (low.endswith(".txt") and _DOC_DIR.search(low) is not None)


def is_doc_file(path: str) -> bool:
    if _SKIPPED_FILE.search(path) or _SKIPPED_DIR.search(path) or _HIDDEN.search(path):
        return False
    return path.lower().endswith(DOC_SUFFIXES) or is_rst(path)


def _markdown(lines: list[str]) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    fence: str | None = None
    for i, line in enumerate(lines):
        m = _FENCE.match(line)
        if m:
            fence = m.group(1)[0] if fence is None else (None if m.group(1)[0] == fence else fence)
            continue
        if fence:
            continue
        atx = _ATX.match(line)
        if atx:
            found.append((i, atx.group(2)))
        elif (
            i
            and _SETEXT.match(line)
            and lines[i - 1].strip()
            and not lines[i - 1].startswith(("    ", "\t"))
            and (not found or found[-1][0] != i - 1)
        ):
            found.append((i - 1, lines[i - 1].strip()))
    return found


def _rst(lines: list[str]) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for i in range(1, len(lines)):
        under, title = lines[i].rstrip(), lines[i - 1].rstrip()
        if not _ADORNMENT.match(under) or not title.strip() or title[0].isspace() or _ADORNMENT.match(title):
            continue
        if len(under) < len(title):
            continue
        start = i - 2 if i >= 2 and lines[i - 2].rstrip() == under else i - 1
        if found and found[-1][0] >= start - 1:
            continue  # an adornment line of the previous heading
        found.append((start, title.strip()))
    return found


def clean_heading(heading: str) -> str:
    text = _NUMBERING.sub("", strip_markup(heading).rstrip(":¶").strip())
    return re.sub(r"\s+", " ", text)


def sections_of(path: str, text: str) -> list[Section]:
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    rst = is_rst(path)
    headings = _rst(lines) if rst else _markdown(lines)
    out: list[Section] = []
    for k, (row, heading) in enumerate(headings):
        end = headings[k + 1][0] if k + 1 < len(headings) else len(lines)
        if rst:
            body_from = row + (3 if _ADORNMENT.match(lines[row]) else 2)  # overline, title, underline
        else:
            setext = not _ATX.match(lines[row]) and row + 1 < len(lines) and _SETEXT.match(lines[row + 1])
            body_from = row + (2 if setext else 1)
        body = sum(1 for line in lines[body_from:end] if line.strip())
        out.append(Section(path, clean_heading(heading), row + 1, max(row + 1, end), body))
    return out


def usable_heading(heading: str, library: str) -> bool:
    words = heading.split()
    if not 1 <= len(words) <= 12 or _VERSIONISH.search(heading):
        return False
    if heading.lower() in GENERIC_HEADINGS or heading.lower() == library.lower():
        return False
    if len(words) == 1 and len(heading) < 6:
        return False
    letters = sum(ch.isalpha() for ch in heading)
    return letters >= 0.6 * len(heading.replace(" ", ""))


def docs_query(heading: str, rng: random.Random) -> str:
    """A docs-seeking question about a heading, phrasing picked by `rng`."""
    h = heading[0].lower() + heading[1:] if heading[1:2].islower() else heading
    return rng.choice(TEMPLATES).format(h=h)
