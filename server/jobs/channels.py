"""NOTIFY channel names, spelled once (the triggers that send on them live in migrations/)."""

from __future__ import annotations

__all__ = ["HINT_CHANNEL", "JOBS_CHANNEL", "PROJECTS_CHANNEL"]

# Project databases: `indexing_jobs` triggers send {id, status, progress, version, op} (p0002).
JOBS_CHANNEL = "indexing_jobs"
# The registry database: a project was created (r0001).
PROJECTS_CHANNEL = "codebase_projects"
# The registry database: "a job may be claimable" (queued, re-queued, or a job slot freed; see worker.py).
HINT_CHANNEL = "codebase_jobs"
