"""Scans restricted to some paths judge each one by exactly the rules of a full scan."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.indexer.scanner import is_editor_temp, scan_repository
from server.indexer.scope import PathScope, normalize_rel_path
from tests.repos import write_files

EDITOR_TEMPORARIES = ("app.py~", ".#app.py", "#app.py#", "4913", "app.py___jb_tmp___", ".app.py.swp")


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    x = "x = 1\n"
    root = write_files(
        tmp_path / "repo",
        {
            "src/app.py": x, "src/sub/deep.py": x, "docs/guide.md": x, "lib/cache": x, "other/local_x.py": x,
            "README.md": x,
            ".gitignore": "*.log\n!important.log\ncache/\n/secret.txt\n",
            "debug.log": x, "important.log": x, "secret.txt": x, "cache/data.py": x,
            "src/.gitignore": "local_*.py\n!local_keep.py\n",
            "src/local_settings.py": x, "src/local_keep.py": x, "src/sub/local_x.py": x,
            ".git/HEAD": "ref: refs/heads/main\n", ".git/info/exclude": "excluded_by_info.py\n",
            "excluded_by_info.py": x,
            ".codebase-mcp/ignore": "docs/private/\n!dist/\n", "docs/private/notes.md": x, "dist/keep.js": x,
            "pyproject.toml": "[project]\nname = 'demo'\n", "build/lib/app.py": x, "doc/build/index.rst": x,
            "node_modules/pkg/index.js": x, "myenv/pyvenv.cfg": "home = /usr/bin\n", "myenv/lib/pkg.py": x,
            "src/__pycache__/app.cpython-311.pyc": b"\x00\x01", "img/logo.png": b"\x89PNG\r\n",
            "static/app.min.js": "var a=1;", "data/huge.txt": "y" * 5000,
            **{f"src/{temp}": x for temp in EDITOR_TEMPORARIES},
        },
    )  # fmt: skip
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
