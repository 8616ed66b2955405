"""What a query seeks: implementation code (the default), documentation, or tests.

Ranking uses it to order roles: code-seeking queries get implementation first, while "how do I
configure …", "guide to …" or "explain …" get the documentation that answers them, and "tests for …"
gets tests. Only wording decides; an identifier query is always code-seeking.

"How does X work" asks about the mechanism (code); "how do I / how to / how can I" asks for
instructions (docs).

The words that say a query seeks documentation say nothing about its subject, and matched as full
text they find the wrong things: "explain" finds `explain()` methods and "documentation" the
contributing guide's pages about writing documentation. `lexical_query` leaves them out of the
full-text side of a docs-seeking query (the embedded query keeps its wording).
"""

from __future__ import annotations

import re
from typing import Literal, get_args

Intent = Literal["code", "docs", "test"]
INTENTS: tuple[Intent, ...] = get_args(Intent)

_DOCS = re.compile(
    r"""
      ^\s*how\s+(do|can|should|would)\s+(i|we|you|one)\b
    | ^\s*how\s+to\b
    | ^\s*(what\s+is|what\s+are|what's|why\s+(do|does|is|should))\b
    | \b(guide|tutorial|walkthrough|documentation|docs|readme|overview|introduction|intro|howto|how-to
        |explain|explained|explanation|getting\s+started|quickstart|changelog|release\s+notes|faq
        |best\s+practices?|manual|cookbook|recipes?)\b
    """,
    re.IGNORECASE | re.VERBOSE,
)
_TESTS = re.compile(r"\b(tests?|testing|tested|unit\s*tests?|test\s*cases?|test\s*suites?)\b", re.IGNORECASE)
# "Test whether x is prime" describes a predicate (docstring style), not a wish for tests.
_TEST_VERB = re.compile(r"^\s*(tests?|checks?)\s+(whether|if|that)\b", re.IGNORECASE)


def intent_of(query: str, *, identifier: bool = False) -> Intent:
    """The role a query seeks; `identifier=True` for queries that are a bare identifier."""
    if identifier:
        return "code"
    if _TESTS.search(query) and not _TEST_VERB.match(query):
        return "test"
    if _DOCS.search(query):
        return "docs"
    return "code"


def lexical_query(query: str, intent: Intent) -> str:
    """The words full text should match: a docs-seeking query without its docs-seeking phrases
    (`how do I configure logging` → `configure logging`), unless nothing would be left."""
    if intent != "docs":
        return query
    stripped = " ".join(_DOCS.sub(" ", query).split())
    return stripped if any(ch.isalnum() for ch in stripped) else query
