"""Identifiers that end up in SQL as names: validated, never interpolated raw."""

from __future__ import annotations

import hashlib
import re

from server.errors import UserError

PROJECT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
DATABASE_NAME_RE = re.compile(r"^cb_proj_[a-z0-9_]{1,40}_[0-9a-f]{8}$")
REGISTRY_DATABASE = "codebase_mcp_registry"


class InvalidNameError(UserError, ValueError):
    pass


def validate_project_id(project_id: str) -> str:
    if not PROJECT_ID_RE.fullmatch(project_id):
        raise InvalidNameError(
            f"invalid project id {project_id!r}: use 1-63 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return project_id


def database_name_for(project_id: str) -> str:
    """`cb_proj_<slug>_<8 hex>`: readable, unique per id, a valid identifier."""
    validate_project_id(project_id)
    slug = re.sub(r"[^a-z0-9]+", "_", project_id.lower()).strip("_")[:40] or "p"
    digest = hashlib.sha256(project_id.encode()).hexdigest()[:8]
    return validate_database_name(f"cb_proj_{slug}_{digest}")


def validate_database_name(name: str) -> str:
    if not DATABASE_NAME_RE.fullmatch(name):
        raise InvalidNameError(f"invalid project database name {name!r}")
    return name


def quote_ident(name: str) -> str:
    """Quote an identifier that already passed validation."""
    return '"' + name.replace('"', '""') + '"'
