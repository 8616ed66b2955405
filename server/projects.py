"""Which project a request is about.

Order: explicit `project_id` → the session's working directory (set by the
`set_working_directory` tool) → `.codebase-mcp/config.json` found upward from it
→ the default project. Only plain data is kept per session, never the MCP Context.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from server.db.names import InvalidNameError, validate_project_id
from server.db.registry import Project, Registry
from server.errors import UserError

CONFIG_RELATIVE = Path(".codebase-mcp") / "config.json"
MAX_UPWARD_LEVELS = 20
Source = Literal["explicit", "config", "default"]


class ProjectConfigError(UserError, ValueError):
    pass


def _shown(path: Path, limit: int = 200) -> str:
    text = str(path)
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text)} characters)"


@dataclass(frozen=True)
class Resolved:
    project: Project
    source: Source
    config_path: Path | None = None


def find_config(start: Path, *, allowed_roots: Sequence[Path] = ()) -> Path | None:
    """Nearest `.codebase-mcp/config.json` at or above `start` (at most 20 levels up).

    With `allowed_roots`, the search never goes above the root that holds `start`.
    """
    current = start.resolve()
    roots = [root.resolve() for root in allowed_roots]
    ceiling = next((root for root in roots if current.is_relative_to(root)), None)
    if roots and ceiling is None:
        return None
    for _ in range(MAX_UPWARD_LEVELS + 1):
        candidate = current / CONFIG_RELATIVE
        if candidate.is_file() and not candidate.is_symlink():
            return candidate
        if current.parent == current or current == ceiling:
            return None
        current = current.parent
    return None


def project_id_from_config(path: Path) -> str:
    """`{"project": {"id": "..."}}` or `{"project": {"name": "..."}}` (the name is slugged)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProjectConfigError(f"{path}: not readable JSON ({exc})") from exc
    project = data.get("project") if isinstance(data, dict) else None
    if not isinstance(project, dict):
        raise ProjectConfigError(f'{path}: expected {{"project": {{"id": ...}} }} or {{"project": {{"name": ...}} }}')
    raw = project.get("id") or project.get("name")
    if not isinstance(raw, str) or not raw.strip():
        raise ProjectConfigError(f"{path}: project.id or project.name must be a non-empty string")
    candidate = raw.strip()
    if project.get("id") is None:
        candidate = re.sub(r"[^A-Za-z0-9_.-]+", "-", candidate).strip("-.")[:63].lower()
    try:
        return validate_project_id(candidate)
    except InvalidNameError as exc:
        raise ProjectConfigError(f"{path}: {exc}") from exc


class ProjectResolver:
    def __init__(
        self,
        registry: Registry,
        *,
        default_project: str,
        auto_create: bool = True,
        allowed_roots: Sequence[Path] = (),
    ) -> None:
        self.registry = registry
        self.allowed_roots = list(allowed_roots)
        self.default_project = validate_project_id(default_project)
        self.auto_create = auto_create
        self._working_dirs: dict[str, Path] = {}
        self._process_dir: Path | None = None

    def set_working_directory(self, session_key: str, directory: Path, *, process_wide: bool = False) -> Path:
        """Remember the session's directory; `process_wide` when the process serves one client (stdio)."""
        try:
            resolved = directory.expanduser().resolve()
            is_dir = resolved.is_dir()
        except (OSError, ValueError, RuntimeError) as exc:  # too long, NUL byte, unknown user, symlink loop
            raise ProjectConfigError(f"working directory {_shown(directory)} cannot be used: {exc}") from exc
        if not is_dir:
            raise ProjectConfigError(f"working directory {_shown(directory)} does not exist or is not a directory")
        self._working_dirs[session_key] = resolved
        if process_wide:
            self._process_dir = resolved
        return resolved

    def working_directory(self, session_key: str | None) -> Path | None:
        found = self._working_dirs.get(session_key) if session_key else None
        return found or self._process_dir

    def forget_session(self, session_key: str) -> None:
        self._working_dirs.pop(session_key, None)

    async def resolve(self, explicit: str | None, session_key: str | None = None, *, create: bool = False) -> Resolved:
        """Resolve the project; `create` provisions unknown ids (only for writing operations)."""
        config_path: Path | None = None
        source: Source
        if explicit is not None and not explicit.strip():
            raise ProjectConfigError(
                f"project_id {explicit!r} is blank; pass a project id, or leave project_id out to use the "
                "session's project (set_working_directory) or the default one"
            )
        if explicit is not None:
            project_id, source = validate_project_id(explicit.strip()), "explicit"
        else:
            workdir = self.working_directory(session_key)
            config_path = find_config(workdir, allowed_roots=self.allowed_roots) if workdir else None
            if config_path is not None:
                project_id, source = project_id_from_config(config_path), "config"
            else:
                project_id, source = self.default_project, "default"
        if create and (self.auto_create or source != "explicit"):
            project = await self.registry.get_or_create(project_id)
        else:
            project = await self.registry.require(project_id)
        return Resolved(project=project, source=source, config_path=config_path)
