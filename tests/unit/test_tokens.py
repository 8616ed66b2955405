from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.indexer.tokens import MAX_TOKEN_CHARS, MAX_TOKENS, code_tokens, identifier_lexeme, query_tokens, stem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("IndexingJobCreate", "indexingjobcreate index job creat"),
        ("get_HTTPResponse2", "gethttpresponse2 get httpresponse2 http respons 2"),
        ("parse_file", "parsefile pars file"),
        ("parse_header_links", "parseheaderlinks pars header link"),
        ("Headers", "header"),
        ("HTTP", "http"),
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
    assert code_tokens("“quoted”—dash → arrow") == "quot dash arrow"
    assert code_tokens("x = 1\ny = 2") == "x 1 y 2"
    assert code_tokens("no\u00a0break\tTab\x00nul") == "no break tab nul"
    assert code_tokens("lone \ud800 surrogate") == "lone surrog"


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
    assert tokens[:4] == ["someidentifier0", "some", "identifi", "0"]
    assert code_tokens("a" * (MAX_TOKEN_CHARS + 1) + " kept") == "kept"


def test_empty_and_punctuation_only_text() -> None:
    assert code_tokens("") == ""
    assert code_tokens("{}()[];,.=+-*/") == ""
    assert query_tokens("?!") == []


def test_query_tokens_follow_the_same_rule_without_repeats() -> None:
    assert query_tokens("IndexingJobCreate job") == ["indexingjobcreate", "index", "job", "creat"]
    assert query_tokens("how does get_HTTPResponse work?") == [
        "how", "doe", "gethttpresponse", "get", "httpresponse", "http", "respons", "work",
    ]  # fmt: skip
    document = set(code_tokens("class IndexingJobCreate(BaseModel): ...").split())
    assert set(query_tokens("indexing job create")) <= document
    assert set(query_tokens("IndexingJobCreate")) <= document


def test_natural_language_reaches_identifiers_through_stems() -> None:
    document = set(code_tokens("def parse_header_links(value):").split())
    assert set(query_tokens("parsed link headers")) <= document
    assert set(query_tokens("registered blueprints")) <= set(code_tokens("def register_blueprint(self):").split())
    # The exact whole form is kept: only the identifier itself matches it, not its words in another order.
    assert "parseheaderlinks" in document
    assert "parseheaderlinks" not in query_tokens("links header parse")


def test_stemming_is_limited_to_ascii_words() -> None:
    assert stem("running") == "run"
    assert stem("go") == "go"  # too short to stem
    assert stem("2024") == "2024"
    assert stem("café") == "café"
    assert identifier_lexeme("register_blueprint") == "registerblueprint"
    assert identifier_lexeme("headers") == "header"
    assert identifier_lexeme("__init__") == "init"


def test_the_c_stemmer_stems_as_the_snowball_reference_does() -> None:
    # Stored documents and queries must keep their stems whichever implementation made them: the
    # C stemmer (PyStemmer) against the pure-Python one generated from the same Snowball source.
    from snowballstemmer.english_stemmer import EnglishStemmer

    reference = EnglishStemmer()
    root = Path(__file__).resolve().parents[2]
    words: set[str] = {
        "generously", "dying", "skies", "news", "proceed", "exceed", "succeeding", "communism", "arsenal",
        "gener", "commune", "ugly", "early", "only", "singly", "sky", "howe", "atlas", "cosmos", "bias",
        "andes", "inning", "outing", "canning", "herring", "earring", "proceeded", "hopefulness",
    }  # fmt: skip
    for source in sorted(root.glob("server/**/*.py")) + sorted(root.glob("docs/*.md")):
        for part in re.findall(r"[a-z]+", source.read_text(encoding="utf-8").lower()):
            if len(part) >= 3:
                words.add(part)
    assert len(words) > 3000
    differing = [w for w in sorted(words) if stem(w) != reference.stemWord(w)]
    assert differing == []
