"""Project databases are cloned from a migrated template database instead of being migrated one by one.

`cb_template_<head>_<dim>` holds the project schema at the head revision (and pgvector) for one
embedding dimension. It is built on the first project's creation (under the provisioning lock) and
sealed with `ALLOW_CONNECTIONS false` as its last step: a sealed template is complete, nobody can
connect to it (a connected session would make `CREATE DATABASE ... TEMPLATE` fail), and a template
that is not sealed (a crash while building it) is dropped and built again. Templates of other
revisions are dropped when the current one is built. Cloning copies files; migrating ran dozens of
DDL statements and Alembic each time. A template belongs to the role that built it: only its owner (or a
superuser) may copy it, so another role sharing the server provisions by migrating, as before.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

import asyncpg

import migrations
from server.db.names import quote_ident

log = logging.getLogger(__name__)

TEMPLATE_PREFIX = "cb_template_"
_TEMPLATE_RE = re.compile(r"^cb_template_[a-z0-9]{1,20}_[0-9]{1,5}$")


def template_name(dimension: int) -> str | None:
    """The template database for the project schema's head at `dimension`, or None (no usable head)."""
    try:
        head = migrations.head_revision("project")
    except (OSError, SyntaxError, ValueError, RuntimeError):
        return None
    name = f"{TEMPLATE_PREFIX}{head.lower()}_{dimension}"
    return name if _TEMPLATE_RE.fullmatch(name) else None


async def ensure_template(
    conn: asyncpg.Connection, name: str, *, create: Callable[[str], Awaitable[bool]],
    migrate: Callable[[str], Awaitable[None]],
) -> bool:  # fmt: skip
    """Make `name` a sealed template of this role; False when another role owns it (clone nothing then).

    `conn` is on the maintenance database and holds the provisioning lock; `create(name)` creates an
    empty database, `migrate(name)` brings it (pgvector and schema) to head. Errors of either propagate
    and leave no template behind.
    """
    row = await conn.fetchrow(
        "SELECT datallowconn, datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user) AS mine "
        "FROM pg_database WHERE datname = $1",
        name,
    )
    if row is not None and not row["mine"]:
        return False  # only its owner (or a superuser) may copy a database that is not marked a template
    if row is not None and not row["datallowconn"]:
        return True
    if row is not None:  # left half-built by a crash: start again
        log.warning("template database %s was not sealed; building it again", name)
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
    await create(name)
    try:
        await migrate(name)
        await conn.execute(f"ALTER DATABASE {quote_ident(name)} WITH ALLOW_CONNECTIONS false")
    except BaseException:
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        raise
    log.info("built template database %s", name)
    await _drop_other_revisions(conn, name)
    return True


async def _drop_other_revisions(conn: asyncpg.Connection, current: str) -> None:
    """This role's templates of other schema revisions at the same dimension."""
    dimension = current.rsplit("_", 1)[1]
    rows = await conn.fetch(
        "SELECT datname FROM pg_database WHERE starts_with(datname, $1) "
        "AND datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user)",
        TEMPLATE_PREFIX,
    )
    for (name,) in rows:
        if name != current and _TEMPLATE_RE.fullmatch(name) and name.rsplit("_", 1)[1] == dimension:
            await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
            log.info("dropped template database %s of another schema revision", name)


async def clone(conn: asyncpg.Connection, database: str, template: str) -> bool:
    """`CREATE DATABASE database TEMPLATE template`; False when `database` already exists."""
    try:
        await conn.execute(f"CREATE DATABASE {quote_ident(database)} TEMPLATE {quote_ident(template)}")
    except asyncpg.DuplicateDatabaseError:
        return False
    return True
