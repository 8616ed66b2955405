"""`codebase-mcp db stop`: stop the embedded PostgreSQL, refused while other processes use it."""

from __future__ import annotations

import os
import sys

from server.db.embedded import EmbeddedPostgres
from server.db.keeper import active_users
from server.settings import Settings


def db_stop(settings: Settings, *, force: bool) -> int:
    if settings.database_url:
        print("DATABASE_URL is set: there is no embedded PostgreSQL to stop", file=sys.stderr)
        return 2
    embedded = EmbeddedPostgres(settings.data_dir, port=settings.embedded_pg_port)
    if embedded.running() is None:
        print("not running")
        return 0
    users = active_users(embedded.data_dir, exclude_pid=os.getpid())
    if users:
        listed = "\n".join(f"  pid {u.pid}: {u.command}" for u in users)
        if not force:
            print(
                f"warning: {len(users)} codebase-mcp process(es) use this embedded PostgreSQL:\n{listed}\n"
                "Stopping it under them fails their requests until they start it again (they do so within "
                "seconds). Stop them first, or pass --force.",
                file=sys.stderr,
            )
            return 1
        print(f"warning: stopping it under {len(users)} running process(es); they will start it again", file=sys.stderr)
    stopped = embedded.stop()
    print("stopped" if stopped else "not running")
    return 0
