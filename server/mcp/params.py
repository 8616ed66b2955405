"""Tool parameter types shared by several tools: one description, one validation rule each.

Every string a client sends goes through `Text`: PostgreSQL text and file paths cannot hold NUL
characters, and lone surrogates cannot be encoded, so such input is refused at validation with a
clear line instead of failing deep inside a query.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

__all__ = ["ForceReindex", "JobId", "OptionalText", "ProjectId", "RepoPath", "Text", "clean_text"]


def clean_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text (it contains a lone surrogate)") from exc
    return value


Text = Annotated[str, AfterValidator(clean_text)]
OptionalText = Text | None

ProjectId = Annotated[
    OptionalText,
    Field(
        description="Project id (1-63 letters, digits, '_', '-', '.'). Default: the session's project, from "
        "the .codebase-mcp/config.json above the directory given to set_working_directory, else DEFAULT_PROJECT"
    ),
]
JobId = Annotated[Text, Field(description="Job id (a UUID) returned by start_indexing_background")]
RepoPath = Annotated[
    Text,
    Field(
        description="Absolute path of the repository directory on the server's machine, e.g. "
        "/home/alice/src/app ('~' is not expanded; must lie inside ALLOWED_ROOTS when that is set)"
    ),
]
ForceReindex = Annotated[
    bool,
    Field(
        description="Re-read and re-chunk every file, also those unchanged since the last run (default: only "
        "new and changed files). Embeddings are not recomputed for chunk content the embedding cache "
        "already holds: only new or changed chunk content is embedded."
    ),
]
