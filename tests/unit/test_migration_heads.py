"""The head revisions read from the version files are Alembic's own, and reading them imports no Alembic."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from alembic.script import ScriptDirectory

import migrations

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("schema", ["project", "registry"])
def test_head_revision_matches_alembics_script_directory(schema: migrations.Schema) -> None:
    script = ScriptDirectory.from_config(migrations.alembic_config("", schema))
    assert migrations.head_revision(schema) == script.get_current_head()


def test_reading_the_heads_leaves_alembic_and_sqlalchemy_unimported() -> None:
    code = (
        "import json, sys, migrations, server.db.registry\n"
        "heads = [migrations.head_revision('project'), migrations.head_revision('registry')]\n"
        "print(json.dumps([heads, sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'sqlalchemy'))]))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    heads, loaded = json.loads(out)
    assert all(heads) and loaded == []
