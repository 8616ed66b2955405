"""Schema migrations (Alembic, plain SQL) for the registry and for each project database.

`upgrade(dsn, "project", embedding_dim=384)` brings one database to head; it runs in a
worker thread because Alembic is synchronous and env.py starts its own event loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

Schema = Literal["project", "registry"]
HERE = Path(__file__).resolve().parent
DEFAULT_EMBEDDING_DIM = 384


def alembic_config(dsn: str, schema: Schema, *, embedding_dim: int = DEFAULT_EMBEDDING_DIM) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(HERE / schema / "versions"))
    cfg.attributes["dsn"] = dsn
    cfg.attributes["embedding_dim"] = embedding_dim
    return cfg


def head_revision(schema: Schema) -> str:
    head = ScriptDirectory.from_config(alembic_config("", schema)).get_current_head()
    assert head is not None
    return head


async def upgrade(dsn: str, schema: Schema, revision: str = "head", *, embedding_dim: int = 384) -> None:
    cfg = alembic_config(dsn, schema, embedding_dim=embedding_dim)
    await asyncio.to_thread(command.upgrade, cfg, revision)


async def downgrade(dsn: str, schema: Schema, revision: str, *, embedding_dim: int = 384) -> None:
    cfg = alembic_config(dsn, schema, embedding_dim=embedding_dim)
    await asyncio.to_thread(command.downgrade, cfg, revision)
