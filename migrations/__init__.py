"""Schema migrations (Alembic, plain SQL) for the registry and for each project database.

`upgrade(dsn, "project", embedding_dim=384)` brings one database to head; it runs in a
worker thread because Alembic is synchronous and env.py starts its own event loop.

Alembic (and SQLAlchemy under it) is imported only when a migration actually runs: a process
whose databases are already at head learns the head from the version files themselves
(`head_revision`) and compares it with the database's `alembic_version` (`at_head`), which
saves every `codebase-mcp` process a large share of its start-up.
"""

from __future__ import annotations

import ast
import asyncio
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import asyncpg
    from alembic.config import Config

Schema = Literal["project", "registry"]
HERE = Path(__file__).resolve().parent
DEFAULT_EMBEDDING_DIM = 384


def alembic_config(dsn: str, schema: Schema, *, embedding_dim: int = DEFAULT_EMBEDDING_DIM) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(HERE / schema / "versions"))
    cfg.attributes["dsn"] = dsn
    cfg.attributes["embedding_dim"] = embedding_dim
    return cfg


_MISSING = object()


def _assigned(tree: ast.Module, name: str) -> object:
    """The literal value a version file assigns to `name` (`revision: str = "p0001"`), or _MISSING."""
    for node in tree.body:
        targets: list[ast.expr]
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        elif isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        else:
            continue
        if any(isinstance(target, ast.Name) and target.id == name for target in targets):
            return ast.literal_eval(value)
    return _MISSING


@cache
def head_revision(schema: Schema) -> str:
    """The single head of `schema`'s revisions, read from the version files without importing Alembic.

    Raises RuntimeError when the files do not name exactly one head (Alembic then has the last word).
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((HERE / schema / "versions").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        revision, down = _assigned(tree, "revision"), _assigned(tree, "down_revision")
        if not isinstance(revision, str):
            raise RuntimeError(f"{path} assigns no literal revision")
        revisions.add(revision)
        if isinstance(down, str):
            parents.add(down)
        elif isinstance(down, tuple | list):
            parents.update(str(d) for d in down)
        elif down is not None:
            raise RuntimeError(f"{path} assigns no literal down_revision")
    heads = revisions - parents
    if len(heads) != 1:
        raise RuntimeError(f"the {schema} migrations have {len(heads)} heads: {sorted(heads)}")
    return heads.pop()


async def at_head(conn: asyncpg.Connection, schema: Schema) -> bool:
    """True when the database `conn` is on has `schema` at its head revision (nothing to migrate)."""
    import asyncpg

    try:
        head = head_revision(schema)
    except (OSError, SyntaxError, ValueError, RuntimeError):
        return False  # let Alembic decide
    try:
        current = await conn.fetch("SELECT version_num FROM alembic_version")
    except asyncpg.UndefinedTableError:
        return False
    return [row["version_num"] for row in current] == [head]


async def upgrade(dsn: str, schema: Schema, revision: str = "head", *, embedding_dim: int = 384) -> None:
    from alembic import command

    cfg = alembic_config(dsn, schema, embedding_dim=embedding_dim)
    await asyncio.to_thread(command.upgrade, cfg, revision)


async def downgrade(dsn: str, schema: Schema, revision: str, *, embedding_dim: int = 384) -> None:
    from alembic import command

    cfg = alembic_config(dsn, schema, embedding_dim=embedding_dim)
    await asyncio.to_thread(command.downgrade, cfg, revision)
