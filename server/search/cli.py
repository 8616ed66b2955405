"""`codebase-mcp search "..."`: the search_code tool on the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

from server.search.engine import CodeSearch
from server.search.models import SearchHit, SearchResponse
from server.search.request import SearchRequest
from server.settings import Settings

MAX_SHOWN_LINES = 40  # per result in the pretty view (--json always has everything)
_SESSION = "cli"


async def run_search(args: argparse.Namespace, settings: Settings) -> int:
    """Errors (bad input, unknown project, no database) propagate: `codebase-mcp` prints them as one line."""
    from server.app import App

    request = SearchRequest(
        query=args.query, project_id=args.project, repository=args.repository, language=args.language,
        path_glob=args.path_glob, limit=args.limit, context_lines=args.context_lines, scope=args.scope,
    ).validated()  # fmt: skip  # bad input is refused before the database is started
    app = App(settings)
    try:
        await app.start(workers=False)
        if args.project is None:
            # Like the MCP tools: .codebase-mcp/config.json above the working directory picks the project.
            app.resolver.set_working_directory(_SESSION, Path.cwd(), process_wide=True)
        response = await CodeSearch.from_app(app).search(request, session_key=_SESSION)
    finally:
        await app.close()
    if args.json:
        sys.stdout.write(response.model_dump_json(indent=2) + "\n")
    else:
        print_response(response, Console())
    return 0


def print_response(response: SearchResponse, console: Console) -> None:
    mode = "hybrid" if response.mode == "hybrid" else "full text only"
    n = len(response.results)
    console.print(
        f"[bold]{n}[/bold] result{'' if n == 1 else 's'} for [cyan]{escape(response.query)}[/cyan] "
        f"in project [bold]{escape(response.project_id)}[/bold] ({mode}, "
        f"{response.embedding_coverage:.0%} embedded, static {response.static_coverage:.0%}, "
        f"{response.took_ms:.0f} ms)"
    )
    if response.notice:
        console.print(f"[yellow]{escape(response.notice)}[/yellow]")
    if response.pending_changes is not None:
        console.print(f"[yellow]Changes still being indexed: {escape(response.pending_changes.detail)}[/yellow]")
    for rank, hit in enumerate(response.results, start=1):
        console.print(_render_hit(rank, hit))


def _render_hit(rank: int, hit: SearchHit) -> Panel:
    title = Text.assemble(
        (f"{rank}. ", "bold"),
        (f"{hit.file_path}:{hit.start_line}", "bold green"),
        (f"-{hit.end_line}", "green"),
        (f"  {hit.symbol}" if hit.symbol else "", "bold magenta"),
        (f"  {hit.kind}, {hit.language}" + ("" if hit.role == "code" else f", {hit.role}"), "dim"),
    )
    parts = [f"score {hit.score:.3f}"]
    if hit.scores.cosine is not None:
        parts.append(f"cosine {hit.scores.cosine:.3f}")
    if hit.scores.static is not None:
        parts.append(f"static {hit.scores.static:.3f}")
    parts.append(f"text {hit.scores.text:.3f}")
    if hit.scores.identifier:
        parts.append(f"name match +{hit.scores.identifier:.2f}")
    body = hit.content.split("\n")
    hidden = max(0, len(body) - MAX_SHOWN_LINES)
    lines = hit.context_before + body[:MAX_SHOWN_LINES] + (hit.context_after if not hidden else [])
    first = hit.start_line - len(hit.context_before)
    syntax = Syntax(
        "\n".join(lines),
        _lexer(hit.language),
        line_numbers=True,
        start_line=first,
        highlight_lines=set(range(hit.start_line, hit.start_line + min(len(body), MAX_SHOWN_LINES))),
        word_wrap=False,
        theme="ansi_dark",
    )
    return Panel(
        Group(syntax, Text(f"… {hidden} more lines", style="dim")) if hidden else syntax,
        title=title,
        title_align="left",
        subtitle=Text(" · ".join(parts) + f" · {hit.repository_name}", style="dim"),
        subtitle_align="right",
    )


def _lexer(language: str) -> str:
    return {"csharp": "c#", "cpp": "c++", "shell": "bash", "text": "text"}.get(language, language)
