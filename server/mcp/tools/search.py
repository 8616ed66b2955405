"""`search_code`: hybrid (vector + full-text) search over indexed code."""

from __future__ import annotations

from typing import Annotated

from fastmcp import Context, FastMCP
from pydantic import Field

from server.app import App
from server.mcp.context import session_key
from server.mcp.params import OptionalText, ProjectId, Text
from server.search.engine import CodeSearch
from server.search.models import SearchResponse
from server.search.request import MAX_CONTEXT_LINES, MAX_LIMIT, Scope, SearchRequest


def register(mcp: FastMCP, app: App) -> None:
    engine: CodeSearch | None = None

    def current_engine() -> CodeSearch:
        """The search over the app's current collaborators: start() after close() replaces them."""
        nonlocal engine
        if (
            engine is None
            or engine.cluster is not app.cluster
            or engine.registry is not app.registry
            or engine.resolver is not app.resolver
        ):
            engine = CodeSearch.from_app(app)
        return engine

    @mcp.tool
    async def search_code(
        query: Annotated[
            Text,
            Field(
                description='What to find: a description in plain words ("where do we retry failed HTTP '
                'requests") or an identifier (`IndexingJobCreate`, `parse_config`, `Foo.bar`), whose '
                "definition then comes first"
            ),
        ],
        project_id: ProjectId = None,
        repository: Annotated[OptionalText, Field(description="Only this repository (its name or id)")] = None,
        language: Annotated[OptionalText, Field(description="Only this language, e.g. python, typescript")] = None,
        path_glob: Annotated[
            OptionalText,
            Field(
                description="Only files whose repository-relative path matches, e.g. `src/**/*.py`; `*` stays "
                "within one folder, `**` spans folders, a pattern without `/` matches the file name anywhere"
            ),
        ] = None,
        limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description=f"Number of results (1-{MAX_LIMIT})")] = 10,
        context_lines: Annotated[
            int,
            Field(
                ge=0,
                le=MAX_CONTEXT_LINES,
                description=f"Lines of context above and below each result (0-{MAX_CONTEXT_LINES})",
            ),
        ] = 2,
        scope: Annotated[
            Scope,
            Field(
                description="Which files: all (default; implementation first for code questions, docs for "
                '"how do I …" questions, tests when tests are asked for), code (implementation only), tests or docs'
            ),
        ] = "all",
        ctx: Context | None = None,
    ) -> SearchResponse:
        """Search indexed code by meaning and by name (vectors and full text, blended)."""
        request = SearchRequest(query, project_id, repository, language, path_glob, limit, context_lines, scope)
        return await current_engine().search(request, session_key=session_key(ctx))
