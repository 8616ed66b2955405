"""File names that are not UTF-8, hold newlines or escapes, look like options or globs, or are very
long: the repository indexes, the names are stored escaped, and reading them back works."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.app import App
from server.fs.names import unescape_name
from server.indexer.scanner import MAX_REL_PATH_BYTES
from server.search.engine import CodeSearch
from server.search.request import SearchRequest

pytestmark = pytest.mark.integration

BODY = "def {name}():\n    '''marker {name}'''\n    return {i}\n"
# raw name (bytes) → how it is stored and shown
NAMES: dict[bytes, str] = {
    b"\xff.py": "\\xff.py",
    b"dir\xfe/inner.py": "dir\\xfe/inner.py",
    b"new\nline.py": "new\\x0aline.py",
    b"esc\x1b[2Jclear.py": "esc\\x1b[2Jclear.py",
    b"-rf.py": "-rf.py",
    b"--help.py": "--help.py",
    b"*.py": "*.py",
    b"[abc].py": "[abc].py",
    b"?.py": "?.py",
    b"back\\slash.py": "back\\\\slash.py",
    b"l" * 250 + b".py": "l" * 250 + ".py",
}


def _write(root: Path, raw: bytes, text: str) -> None:
    path = os.fsencode(root) + b"/" + raw
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(text.encode())


async def test_hostile_names_index_and_read_back(app: App, tmp_path: Path, project_id: str) -> None:
    repo = tmp_path / "hostile"
    repo.mkdir()
    for i, raw in enumerate(NAMES):
        _write(repo, raw, BODY.format(name=f"hostile_fn_{i}", i=i))
    (repo / "plain.py").write_text(BODY.format(name="plain_fn", i=99))
    # Deeper than PostgreSQL can index as a key: skipped with a reason, the rest goes on.
    deep = b"/".join([b"d" * 200] * 11) + b"/too_deep.py"
    _write(repo, deep, BODY.format(name="too_deep_fn", i=100))

    project = (await app.resolver.resolve(project_id, None, create=True)).project
    result = await app.index(project, repo)
    assert result.files_indexed == len(NAMES) + 1
    assert result.files_skipped.get("path_too_long") == 1
    assert len(deep) > MAX_REL_PATH_BYTES

    assert app.cluster is not None
    pool = await app.cluster.pool(project.database_name)
    stored = {r["rel_path"] for r in await pool.fetch("SELECT rel_path FROM files")}
    assert stored == {*NAMES.values(), "plain.py"}
    for raw, shown in NAMES.items():
        assert os.fsencode(unescape_name(shown)) == raw

    search = CodeSearch.from_app(app)
    for i, shown in enumerate(NAMES.values()):
        response = await search.search(
            SearchRequest(query=f"hostile_fn_{i}", project_id=project_id, limit=3, context_lines=1)
        )
        hit = response.results[0]
        assert (hit.file_path, hit.symbol) == (shown, f"hostile_fn_{i}")
        # Context lines come from the file itself, opened through its escaped name.
        assert hit.context_source == "file", shown

    # A second run finds every file unchanged: the escaped names match what is stored.
    again = await app.index(project, repo)
    assert (again.files_indexed, again.files_unchanged, again.files_deleted) == (0, len(NAMES) + 1, 0)
    os.unlink(os.fsencode(repo) + b"/\xff.py")
    third = await app.index(project, repo)
    assert third.files_deleted == 1
