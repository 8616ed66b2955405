"""How fresh the searched repositories are: changes queued or still being stored."""

from __future__ import annotations

from collections.abc import Sequence

from server.db.cluster import Conn
from server.jobs import refresh
from server.search.models import PendingChanges


async def pending_changes(conn: Conn, root_paths: Sequence[str]) -> PendingChanges | None:
    """None when no job is queued or still storing files for these repositories."""
    pending = await refresh.pending_changes(conn, root_paths)
    if not pending.jobs:
        return None
    whole = sorted(pending.whole_repositories)
    parts = [f"{len(pending.paths)} changed paths"] if pending.paths else []
    parts += [f"every file of {root}" for root in whole]
    detail = f"{len(pending.jobs)} jobs queued or storing changes ({'; '.join(parts)}); refresh_index waits for them"
    return PendingChanges(jobs=pending.jobs, paths=len(pending.paths), whole_repositories=whole, detail=detail)
