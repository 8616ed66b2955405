from __future__ import annotations

import re

import pytest

from server.indexer.tokens import MAX_TOKEN_CHARS, MAX_TOKENS, code_tokens, query_tokens

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("IndexingJobCreate", "indexingjobcreate indexing job create"),
        ("get_HTTPResponse2", "gethttpresponse2 get httpresponse2 http response 2"),
        ("parse_file", "parsefile parse file"),
        ("XMLParser", "xmlparser xml parser"),
        ("getHTTP", "gethttp get http"),
        ("utf8", "utf8 utf 8"),
        ("__init__", "init"),
        ("plain", "plain"),
        ("MAX_SIZE", "maxsize max size"),
        ("café", "café"),
    ],
)
def test_identifiers_are_kept_whole_and_split(text: str, expected: str) -> None:
    assert code_tokens(text) == expected


def test_punctuation_is_dropped_and_words_keep_their_order() -> None:
    assert code_tokens("self.assertEqual(a, b)  # hello-world!") == ("self assertequal assert equal a b hello world")
    assert code_tokens("“quoted”—dash → arrow") == "quoted dash arrow"
    assert code_tokens("x = 1\ny = 2") == "x 1 y 2"
    assert code_tokens("no\u00a0break\tTab\x00nul") == "no break tab nul"
    assert code_tokens("lone \ud800 surrogate") == "lone surrogate"


def test_repeated_words_keep_their_frequency() -> None:
    assert code_tokens("fooBar fooBar") == "foobar foo bar foobar foo bar"


def test_every_token_survives_postgres_simple_parser_as_one_word() -> None:
    text = "def get_user_by_id(self, userId: int) -> Optional['User']: return self._db[userId] # é 中文 v1.2"
    for token in code_tokens(text).split(" "):
        # No underscores, dots, slashes or dashes, which the parser would split or join on.
        assert re.fullmatch(r"[^\W_]+", token), token
        assert token == token.lower()


def test_output_is_capped() -> None:
    huge = " ".join(f"someIdentifier{i}" for i in range(MAX_TOKENS))
    tokens = code_tokens(huge).split(" ")
    assert len(tokens) == MAX_TOKENS
    assert tokens[:4] == ["someidentifier0", "some", "identifier", "0"]
    assert code_tokens("a" * (MAX_TOKEN_CHARS + 1) + " kept") == "kept"


def test_empty_and_punctuation_only_text() -> None:
    assert code_tokens("") == ""
    assert code_tokens("{}()[];,.=+-*/") == ""
    assert query_tokens("?!") == []


def test_query_tokens_follow_the_same_rule_without_repeats() -> None:
    assert query_tokens("IndexingJobCreate job") == ["indexingjobcreate", "indexing", "job", "create"]
    assert query_tokens("how does get_HTTPResponse work?") == [
        "how", "does", "gethttpresponse", "get", "httpresponse", "http", "response", "work",
    ]  # fmt: skip
    document = set(code_tokens("class IndexingJobCreate(BaseModel): ...").split())
    assert set(query_tokens("indexing job create")) <= document
    assert set(query_tokens("IndexingJobCreate")) <= document
