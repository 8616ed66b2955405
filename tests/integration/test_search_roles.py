"""Code-first ranking on a small multi-language repository indexed with its tests and docs:
implementation first for code questions, docs for "how do I" questions, tests when asked, the
scope filter, English stems reaching identifiers, and identifier exactness."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.app import App
from server.search.engine import CodeSearch
from server.search.models import SearchResponse
from server.search.request import SearchError, SearchRequest
from tests.repos import write_files

FILES: dict[str, str] = {
    "src/flaskish/app.py": """
        class App:
            def __init__(self):
                self.blueprints = {}

            def register_blueprint(self, blueprint, url_prefix=None):
                # Blueprints are registered on the app under their name; their routes get the prefix.
                if blueprint.name in self.blueprints:
                    raise ValueError(f"a blueprint named {blueprint.name!r} is already registered")
                self.blueprints[blueprint.name] = blueprint
                blueprint.register(self, url_prefix or blueprint.url_prefix)
        """,
    "src/flaskish/ctx.py": """
        class AppContext:
            def __init__(self, app):
                self.app = app
                self._stack = []

            def push(self):
                # Make this the current application context for the running thread.
                self._stack.append(self.app)
                _current.set(self)

            def pop(self):
                self._stack.pop()
                _current.set(None)
        """,
    "src/flaskish/sql.py": """
        def explain(statement):
            # Ask the database how it would run a statement.
            return "EXPLAIN " + statement
        """,
    "tests/test_blueprints.py": """
        from flaskish.app import App
        from flaskish.blueprints import Blueprint


        def test_register_blueprint_registers_blueprints_by_name():
            app = App()
            bp = Blueprint("admin", url_prefix="/admin")
            app.register_blueprint(bp)
            assert app.blueprints["admin"] is bp


        def test_registering_two_blueprints_with_one_name_fails():
            app = App()
            app.register_blueprint(Blueprint("admin"))
            try:
                app.register_blueprint(Blueprint("admin"))
            except ValueError:
                pass
        """,
    "docs/blueprints.md": """
        # Blueprints

        ## How to register a blueprint

        Create a blueprint, add routes to it, then register it on the application with
        `app.register_blueprint(bp, url_prefix="/admin")`. Every route of the blueprint is then served
        under the prefix. Register each blueprint once; names must be unique.

        ## Configuring blueprint templates

        A blueprint can ship its own templates folder; configure it with `template_folder`.
        """,
    "lib/links.js": """
        /* Link header handling for paginated APIs. */
        function parseHeaderLinks(value) {
          const out = {};
          for (const part of value.split(",")) {
            const m = part.match(/<([^>]+)>;\\s*rel="([^"]+)"/);
            if (m) out[m[2]] = m[1];
          }
          return out;
        }

        module.exports = { parseHeaderLinks };
        """,
    "test/links.test.js": """
        const { parseHeaderLinks } = require("../lib/links");

        test("parses next and last links", () => {
          const links = parseHeaderLinks('<https://x/2>; rel="next", <https://x/9>; rel="last"');
          expect(links.next).toBe("https://x/2");
        });
        """,
    "internal/retry/backoff.go": """
        package retry

        import "time"

        // Backoff returns how long to wait before the given attempt.
        func Backoff(attempt int) time.Duration {
            d := 100 * time.Millisecond
            for i := 0; i < attempt; i++ {
                d *= 2
            }
            return d
        }
        """,
    "internal/retry/backoff_test.go": """
        package retry

        import "testing"

        func TestBackoffDoubles(t *testing.T) {
            if Backoff(2) != 4*Backoff(0) {
                t.Fatal("backoff must double with every attempt")
            }
        }
        """,
}


@pytest.fixture
async def indexed(app: App, tmp_path: Path, project_id: str) -> CodeSearch:
    root = write_files(tmp_path / "multi", FILES)
    project = (await app.resolver.resolve(project_id, None, create=True)).project
    await app.index(project, root)
    return CodeSearch.from_app(app)


async def search(engine: CodeSearch, query: str, project_id: str, **kw: object) -> SearchResponse:
    return await engine.search(SearchRequest(query, project_id=project_id, **kw))  # type: ignore[arg-type]


def top(response: SearchResponse, n: int = 3) -> list[tuple[str, str | None, str]]:
    return [(h.file_path, h.symbol, h.role) for h in response.results[:n]]


async def test_roles_are_stored_and_shown(indexed: CodeSearch, project_id: str) -> None:
    response = await search(indexed, "blueprint", project_id, limit=50)
    roles = {h.file_path: h.role for h in response.results}
    assert roles["src/flaskish/app.py"] == "code"
    assert roles["tests/test_blueprints.py"] == "test"
    assert roles["docs/blueprints.md"] == "docs"


async def test_code_questions_get_the_implementation_first(indexed: CodeSearch, project_id: str) -> None:
    response = await search(indexed, "where are blueprints registered", project_id)
    assert response.intent == "code"
    first = response.results[0]
    assert (first.file_path, first.symbol, first.role) == ("src/flaskish/app.py", "App.register_blueprint", "code")
    later = [h.role for h in response.results[1:]]
    assert "test" in later and "docs" in later  # still found, just after the implementation

    pushed = await search(indexed, "how does the app context get pushed", project_id)
    assert pushed.intent == "code" and pushed.results[0].symbol == "AppContext.push"


async def test_docs_questions_get_their_docs(indexed: CodeSearch, project_id: str) -> None:
    response = await search(indexed, "how do I register a blueprint", project_id)
    assert response.intent == "docs"
    first = response.results[0]
    assert first.file_path == "docs/blueprints.md" and first.role == "docs"
    assert "How to register a blueprint" in first.content


async def test_docs_seeking_words_are_not_matched_as_code(indexed: CodeSearch, project_id: str) -> None:
    response = await search(indexed, "explain blueprint templates", project_id, limit=50)
    assert response.intent == "docs"
    first = response.results[0]
    assert first.file_path == "docs/blueprints.md" and "Configuring blueprint templates" in first.content
    explain = next(h for h in response.results if h.symbol == "explain")  # still found by meaning ...
    assert explain.scores.text_raw == 0  # ... but "explain" asked for an explanation, not for explain()
    named = await search(indexed, "explain", project_id)  # a bare identifier is code-seeking: matched as typed
    assert named.intent == "code" and named.results[0].symbol == "explain" and named.results[0].scores.text_raw > 0


async def test_test_questions_get_tests(indexed: CodeSearch, project_id: str) -> None:
    response = await search(indexed, "tests for registering blueprints", project_id)
    assert response.intent == "test"
    assert response.results[0].role == "test"
    go = await search(indexed, "tests of the retry backoff", project_id)
    assert go.results[0].file_path == "internal/retry/backoff_test.go"


async def test_scope_filters_roles(indexed: CodeSearch, project_id: str) -> None:
    for scope, role in (("code", "code"), ("tests", "test"), ("docs", "docs")):
        response = await search(indexed, "register a blueprint", project_id, scope=scope, limit=50)
        assert response.scope == scope and response.results
        assert {h.role for h in response.results} == {role}
    everything = await search(indexed, "register a blueprint", project_id, scope="all", limit=50)
    assert {h.role for h in everything.results} == {"code", "test", "docs"}
    with pytest.raises(SearchError, match="scope must be one of all, code, tests, docs"):
        await search(indexed, "register", project_id, scope="examples")


async def test_stems_reach_identifiers(indexed: CodeSearch, project_id: str) -> None:
    response = await search(indexed, "parsed link headers", project_id)
    first = response.results[0]
    assert (first.file_path, first.symbol) == ("lib/links.js", "parseHeaderLinks")
    assert first.scores.text_raw > 0  # matched by full text through the stems, not only by vectors


async def test_identifiers_are_exact(indexed: CodeSearch, project_id: str) -> None:
    for query, path, symbol in [
        ("parseHeaderLinks", "lib/links.js", "parseHeaderLinks"),
        ("App.register_blueprint", "src/flaskish/app.py", "App.register_blueprint"),
        ("AppContext.push", "src/flaskish/ctx.py", "AppContext.push"),
        ("Backoff", "internal/retry/backoff.go", "Backoff"),
    ]:
        response = await search(indexed, query, project_id)
        assert response.identifier_query and response.intent == "code"
        assert (response.results[0].file_path, response.results[0].symbol) == (path, symbol), query
