"""The repositories of one project: list them, refuse overlapping roots, remove one. Their SQL.

A repository is a root directory; its files are stored with paths relative to that root. A
second root inside (or around) an indexed one would index the same files twice under other
relative paths, so such a root is refused with a message naming the repository already there.

Every indexing run (foreground or a background job) holds a shared advisory lock on its root
for as long as it runs; removal takes the same lock exclusively and refuses when it cannot,
and also refuses while a pending or running job exists for the repository.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path

import asyncpg

from server.db.cluster import Conn
from server.errors import UserError
from server.indexer.pipeline import IndexResult

# First key of the two-key advisory locks on repository roots ("cbrp"); the second is hashtext(root).
ROOT_LOCK_CLASS = 0x63627270
ACTIVE_STATUSES = ("pending", "running")


class RepositoryNotFoundError(UserError, LookupError):
    """No repository matches; the message lists the ones that exist."""


class RepositoryBusyError(UserError, RuntimeError):
    """The repository is being indexed (or has a queued job): it cannot be removed now."""


class OverlappingRepositoryError(UserError, ValueError):
    """The root lies inside an indexed repository, or contains one."""


@dataclass(frozen=True, slots=True)
class Repository:
    id: uuid.UUID
    name: str
    root_path: str
    file_count: int
    chunk_count: int
    unembedded_chunks: int
    created_at: datetime
    last_indexed_at: datetime | None
    active_job_id: uuid.UUID | None
    active_job_status: str | None

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> Repository:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(frozen=True, slots=True)
class RemovedRepository:
    id: uuid.UUID
    name: str
    root_path: str
    files: int
    chunks: int


_SELECT = """
    SELECT r.id, r.name, r.root_path, r.file_count, r.chunk_count, r.created_at, r.last_indexed_at,
           (SELECT count(*) FROM chunks c WHERE c.repository_id = r.id AND c.embedding IS NULL)::int
               AS unembedded_chunks,
           j.id AS active_job_id, j.status AS active_job_status
    FROM repositories r
    LEFT JOIN LATERAL (
        SELECT id, status FROM indexing_jobs
        WHERE repo_path = r.root_path AND status IN ('pending', 'running')
        ORDER BY created_at DESC LIMIT 1
    ) j ON true
"""


async def list_repositories(conn: Conn | asyncpg.Pool) -> list[Repository]:
    rows = await conn.fetch(_SELECT + " ORDER BY r.name, r.root_path")
    return [Repository.from_record(r) for r in rows]


async def overlapping(conn: Conn | asyncpg.Pool, root: Path) -> list[Repository]:
    """Indexed repositories whose root contains `root` or lies inside it (the same root is not overlap)."""
    rows = await conn.fetch(
        _SELECT
        + """
        WHERE r.root_path <> $1
          AND (starts_with($1, rtrim(r.root_path, '/') || '/') OR starts_with(r.root_path, rtrim($1, '/') || '/'))
        ORDER BY length(r.root_path), r.root_path
        """,
        str(root),
    )
    return [Repository.from_record(r) for r in rows]


def overlap_error(root: Path, project_id: str, found: Sequence[Repository]) -> OverlappingRepositoryError:
    """What to say, and what to do, when `root` overlaps indexed repositories of the project."""
    outer = [r for r in found if str(root).startswith(r.root_path.rstrip("/") + "/")]
    if outer:
        repo = outer[-1]  # the innermost repository around `root`
        inside = Path(os.path.relpath(root, repo.root_path)).as_posix()
        return OverlappingRepositoryError(
            f"{root} is inside repository {repo.name!r} ({repo.root_path}), already indexed in project "
            f"{project_id!r}; a second repository would index the same files again under other paths. "
            f"Re-index {repo.root_path} instead (search only this folder with path_glob '{inside}/**'), "
            f"or remove {repo.root_path} first (`codebase-mcp repos remove {repo.root_path}` or the "
            "remove_repository tool), or index into another project"
        )
    names = ", ".join(f"{r.name!r} ({r.root_path})" for r in found[:5]) + (" and more" if len(found) > 5 else "")
    first = found[0].root_path
    return OverlappingRepositoryError(
        f"{root} contains {'repository' if len(found) == 1 else 'repositories'} {names}, already indexed in "
        f"project {project_id!r}; indexing {root} would index those files again under other paths. Remove "
        f"{'it' if len(found) == 1 else 'them'} first (`codebase-mcp repos remove {first}` or the "
        f"remove_repository tool) and then index {root}, or index {root} into another project"
    )


async def check_no_overlap(conn: Conn | asyncpg.Pool, root: Path, project_id: str) -> None:
    found = await overlapping(conn, root)
    if found:
        raise overlap_error(root, project_id, found)


async def find(conn: Conn | asyncpg.Pool, ref: str) -> Repository:
    """A repository by id, absolute root path or name (a name must be unambiguous)."""
    text = ref.strip()
    if not text:
        raise RepositoryNotFoundError("repository is empty: give its name, root path or id")
    rows: list[asyncpg.Record]
    try:
        repo_id = uuid.UUID(text)
    except ValueError:
        if text.startswith("/"):
            candidates = {os.path.normpath(text), str(Path(text).resolve())}
            rows = await conn.fetch(_SELECT + " WHERE r.root_path = ANY($1::text[])", sorted(candidates))
        else:
            rows = await conn.fetch(_SELECT + " WHERE r.name = $1 ORDER BY r.root_path", text)
    else:
        rows = await conn.fetch(_SELECT + " WHERE r.id = $1", repo_id)
    if len(rows) == 1:
        return Repository.from_record(rows[0])
    if len(rows) > 1:
        roots = ", ".join(r["root_path"] for r in rows)
        raise RepositoryNotFoundError(f"{len(rows)} repositories are named {text!r} ({roots}); give the root path")
    known = await list_repositories(conn)
    listed = ", ".join(f"{r.name} ({r.root_path})" for r in known[:20]) or "none"
    raise RepositoryNotFoundError(f"no repository {text!r} in this project; its repositories: {listed}")


def _busy_with_job(repo: Repository) -> RepositoryBusyError:
    return RepositoryBusyError(
        f"repository {repo.name!r} ({repo.root_path}) has an active indexing job {repo.active_job_id} "
        f"({repo.active_job_status}); cancel it (cancel_indexing_background) or let it finish, then remove "
        "the repository"
    )


async def remove(pool: asyncpg.Pool, ref: str) -> RemovedRepository:
    """Delete a repository with its files, chunks and vectors (one transaction); refuse while it is indexed."""
    async with pool.acquire() as conn, conn.transaction():
        repo = await find(conn, ref)
        if repo.active_job_id is not None:
            raise _busy_with_job(repo)
        locked = await conn.fetchval(
            "SELECT pg_try_advisory_xact_lock($1, hashtext($2))", ROOT_LOCK_CLASS, repo.root_path
        )
        if not locked:
            raise RepositoryBusyError(
                f"repository {repo.name!r} ({repo.root_path}) is being indexed right now; wait for that run "
                "to finish (or cancel its job), then remove the repository"
            )
        files = await conn.fetchval("SELECT count(*) FROM files WHERE repository_id = $1", repo.id)
        chunks = await conn.fetchval("SELECT count(*) FROM chunks WHERE repository_id = $1", repo.id)
        await conn.execute("DELETE FROM repositories WHERE id = $1", repo.id)  # files and chunks cascade
    return RemovedRepository(repo.id, repo.name, repo.root_path, int(files), int(chunks))


async def hold_indexing_lock(conn: asyncpg.Connection, root: Path) -> None:
    """Taken (shared) by every indexing run of `root` on a dedicated connection, held until that
    connection closes; removal needs the lock exclusively."""
    await conn.execute("SELECT pg_advisory_lock_shared($1, hashtext($2))", ROOT_LOCK_CLASS, str(root))


async def active_jobs(conn: Conn | asyncpg.Pool) -> list[asyncpg.Record]:
    """Pending and running jobs of the project (id, status, repo_path)."""
    return await conn.fetch(
        "SELECT id, status, repo_path FROM indexing_jobs WHERE status IN ('pending', 'running') ORDER BY created_at"
    )


def empty_repository_warning(path: Path, result: IndexResult) -> str | None:
    """Said when a run found nothing to index: the repository would silently never match a search."""
    if result.files_scanned > 0:
        return None
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(result.files_skipped.items()) if n)
    why = f"skipped: {skipped}" if skipped else "no files at all"
    return (
        f"no indexable files in {path} ({why}); nothing is searchable. Check the path, .gitignore and "
        ".codebase-mcp/ignore, and MAX_FILE_SIZE_BYTES"
    )
