"""Run a multi-statement SQL script inside the migration's transaction."""

from __future__ import annotations

from alembic import op
from sqlalchemy.util import await_only


def run_script(sql: str) -> None:
    # asyncpg's simple-query protocol (execute without arguments) accepts many statements,
    # including plpgsql bodies, which prepared statements do not.
    raw = op.get_bind().connection.driver_connection
    await_only(raw.execute(sql))  # type: ignore[union-attr]
