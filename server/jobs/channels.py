"""NOTIFY channel names, spelled once (the triggers that send on them live in migrations/)."""

from __future__ import annotations

__all__ = ["JOBS_CHANNEL", "PROJECTS_CHANNEL"]

# Project databases: `indexing_jobs` triggers send {id, status, progress, version, op} (p0002).
JOBS_CHANNEL = "indexing_jobs"
# The registry database: a project was created (r0001).
PROJECTS_CHANNEL = "codebase_projects"
