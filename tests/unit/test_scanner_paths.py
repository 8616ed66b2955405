"""Scans restricted to some paths judge each one by exactly the rules of a full scan."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.indexer.scanner import is_editor_temp, scan_repository
from server.indexer.scope import PathScope, normalize_rel_path

pytestmark = pytest.mark.unit


def write(root: Path, rel: str, content: str | bytes = "x = 1\n") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for rel in ("src/app.py", "src/sub/deep.py", "docs/guide.md", "lib/cache", "other/local_x.py", "README.md"):
        write(root, rel)
    write(root, ".gitignore", "*.log\n!important.log\ncache/\n/secret.txt\n")
    write(root, "debug.log")
    write(root, "important.log")
    write(root, "secret.txt")
    write(root, "cache/data.py")
    write(root, "src/.gitignore", "local_*.py\n!local_keep.py\n")
    write(root, "src/local_settings.py")
    write(root, "src/local_keep.py")
    write(root, "src/sub/local_x.py")
    write(root, ".git/HEAD", "ref: refs/heads/main\n")
    write(root, ".git/info/exclude", "excluded_by_info.py\n")
    write(root, "excluded_by_info.py")
    write(root, ".codebase-mcp/ignore", "docs/private/\n!dist/\n")
    write(root, "docs/private/notes.md")
    write(root, "dist/keep.js")
    write(root, "pyproject.toml", "[project]\nname = 'demo'\n")
    write(root, "build/lib/app.py")
    write(root, "doc/build/index.rst")
    write(root, "node_modules/pkg/index.js")
    write(root, "myenv/pyvenv.cfg", "home = /usr/bin\n")
    write(root, "myenv/lib/pkg.py")
    write(root, "src/__pycache__/app.cpython-311.pyc", b"\x00\x01")
    write(root, "img/logo.png", b"\x89PNG\r\n")
    write(root, "static/app.min.js", "var a=1;")
    write(root, "data/huge.txt", "y" * 5000)
    for temp in ("app.py~", ".#app.py", "#app.py#", "4913", "app.py___jb_tmp___", ".app.py.swp"):
        write(root, f"src/{temp}")
    os.symlink(root / "src" / "app.py", root / "src" / "link.py")
    return root


def files_on_disk(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            found.append(str(Path(dirpath, name).relative_to(root)))
    return sorted(found)


def listed(root: Path, paths: list[str] | None = None) -> set[str]:
    return {f.rel_path for f in scan_repository(root, max_file_size=4096, paths=paths).files}


def test_each_path_alone_is_listed_exactly_when_the_full_scan_lists_it(repo: Path) -> None:
    full = listed(repo)
    assert {"src/app.py", "important.log", "dist/keep.js", "doc/build/index.rst", "src/local_keep.py"} <= full
    for rel in files_on_disk(repo):
        assert listed(repo, [rel]) == ({rel} & full), rel


def test_a_folder_stands_for_everything_below_it(repo: Path) -> None:
    full = listed(repo)
    assert listed(repo, ["src"]) == {p for p in full if p.startswith("src/")}
    assert listed(repo, ["src/sub", "docs"]) == {p for p in full if p.startswith(("src/sub/", "docs/"))}
    assert listed(repo, [""]) == full
    assert listed(repo, []) == set()


def test_ignored_paths_are_reported_whether_or_not_they_still_exist(repo: Path) -> None:
    requested = [
        "debug.log", "gone.log",  # *.log, present and deleted
        "cache/data.py", "cache/gone.py",  # inside a directory-only pattern
        "src/local_settings.py",  # nested .gitignore
        "node_modules/pkg/index.js", "node_modules/gone/x.js",  # default-skipped directory
        "vendor/gone/y.go",  # a default-skipped directory that does not exist: judged as a directory
        "build/gone.py",  # build output beside pyproject.toml
        "myenv/lib/pkg.py",  # a virtualenv found by its marker
        "img/logo.png", "img/gone.png",  # binary by name
        "excluded_by_info.py", "docs/private/notes.md",  # .git/info/exclude, the project ignore file
        "src/app.py~",  # an editor backup
        # not ignored:
        "src/app.py", "src/gone.py", "src/newdir/gone.py", "important.log", "data/huge.txt", "src/link.py",
    ]  # fmt: skip
    result = scan_repository(repo, max_file_size=4096, paths=requested)
    assert result.ignored_paths == set(requested[:15])
    assert {f.rel_path for f in result.files} == {"src/app.py", "important.log"}  # huge: too large; link: symlink


def test_editor_temporaries_are_never_indexed(repo: Path) -> None:
    full = listed(repo)
    assert not any(p.startswith("src/") and ("#" in p or "~" in p or "4913" in p or "jb_" in p) for p in full)
    for name in ("a.py~", ".#a.py", "#a.py#", "4913", "a.py___jb_tmp___", "a.py___jb_old___", ".a.py.swp", ".a.swo"):
        assert is_editor_temp(name), name
    for name in ("a.py", "#include.h", "a#b.py", "4914", "README"):
        assert not is_editor_temp(name), name


def test_paths_are_normalised_and_may_not_leave_the_root() -> None:
    assert normalize_rel_path("./src//app.py") == "src/app.py"
    assert normalize_rel_path("/src/") == "src"
    with pytest.raises(ValueError, match="leaves the repository"):
        PathScope(["src/../../etc/passwd"])
