from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from server.indexer.scanner import LoadedFile, ScanResult, load_file, scan_repository
from server.indexer.types import ScannedFile
from tests.repos import write_files


def write(root: Path, rel: str, content: str | bytes = "x = 1\n") -> Path:
    return write_files(root, {rel: content}, dedent=False) / rel


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    """Files outside the repository that symlinks inside it point to."""
    out = tmp_path / "outside"
    write(out, "secret.py", "PASSWORD = 'hunter2'\n")
    write(out, "dir/leak.py", "LEAK = 1\n")
    return out


@pytest.fixture()
def repo(tmp_path: Path, outside: Path) -> Path:
    root = tmp_path / "repo"
    # Indexed code in several languages.
    write(root, "src/app.py", "def main():\n    return 1\n")
    write(root, "src/util.ts", "export function f(): number { return 1 }\n")
    write(root, "cmd/main.go", "package main\n\nfunc main() {}\n")
    write(root, "README.md", "# Title\n\nHello.\n")
    write(root, "Dockerfile", "FROM python:3.11\n")
    write(root, "bin/tool", "#!/usr/bin/env python3\nprint('tool')\n")
    # Root .gitignore: globs, anchored, directory-only and a negation.
    write(root, ".gitignore", "*.log\n!important.log\n/secret.txt\ncache/\n")
    write(root, "debug.log", "noise\n")
    write(root, "important.log", "kept by negation\n")
    write(root, "secret.txt", "anchored at the root\n")
    write(root, "docs/secret.txt", "not matched by the anchored pattern\n")
    write(root, "cache/data.py", "in an ignored directory\n")
    write(root, "lib/cache", "a file named like a directory-only pattern\n")
    # Nested .gitignore: relative to its own directory, with its own negation and anchor.
    write(root, "src/.gitignore", "local_*.py\n!local_keep.py\n/only_here.txt\n")
    write(root, "src/local_settings.py", "DEBUG = True\n")
    write(root, "src/local_keep.py", "KEEP = True\n")
    write(root, "src/only_here.txt", "ignored by src/.gitignore\n")
    write(root, "src/sub/only_here.txt", "not ignored: the pattern is anchored to src/\n")
    write(root, "src/sub/local_x.py", "ignored: unanchored pattern applies below src/\n")
    write(root, "other/local_x.py", "not ignored: outside src/\n")
    # .git internals and .git/info/exclude.
    write(root, ".git/HEAD", "ref: refs/heads/main\n")
    write(root, ".git/info/exclude", "excluded_by_info.py\n")
    write(root, "excluded_by_info.py", "x = 1\n")
    # Project ignore file, which can also re-include a default-skipped directory.
    write(root, ".codebase-mcp/ignore", "docs/private/\n!dist/\n")
    write(root, "docs/private/notes.md", "# private\n")
    write(root, "dist/keep.js", "export const x = 1;\n")
    # Defaults: virtualenvs (by name and by pyvenv.cfg), node_modules, caches, minified files.
    write(root, ".venv/lib/site.py", "x = 1\n")
    write(root, "myenv/pyvenv.cfg", "home = /usr/bin\n")
    write(root, "myenv/lib/python3.11/site-packages/pkg.py", "x = 1\n")
    write(root, "node_modules/pkg/index.js", "module.exports = 1;\n")
    write(root, "src/__pycache__/app.cpython-311.pyc", b"\x00\x01")
    write(root, "pyproject.toml", "[project]\nname = 'demo'\n")  # makes build/ and dist/ output
    write(root, "build/lib/app.py", "def main():\n    return 1\n")
    write(root, "doc/build/index.rst", "Hand-written docs\n=================\n")  # no manifest in doc/
    write(root, "pkg.egg-info/PKG-INFO", "Name: pkg\n")
    write(root, "static/app.min.js", "var a=1;")
    write(root, "static/app.js.map", "{}")
    write(root, "package-lock.json", "{}")
    # Binary by extension and by content, a huge file, a Latin-1 file.
    write(root, "img/logo.png", b"\x89PNG\r\n\x1a\n\x00\x00")
    write(root, "data/blob.dat", b"header\x00\x01\x02binary")
    write(root, "data/huge.txt", "y" * 5000)
    write(root, "legacy/latin1.py", "# caf\xe9\nNAME = 'Jos\xe9'\n".encode("latin-1"))
    # Symlinks escaping the repository: to a file and to a directory.
    os.symlink(outside / "secret.py", root / "src/link_to_secret.py")
    os.symlink(outside / "dir", root / "linked_dir")
    return root


def scan(root: Path) -> ScanResult:
    return scan_repository(root, max_file_size=4096)


def paths(result: ScanResult) -> set[str]:
    return {f.rel_path for f in result.files}


def test_lists_code_and_docs_sorted_with_their_languages(repo: Path) -> None:
    result = scan(repo)
    rels = [f.rel_path for f in result.files]
    assert rels == sorted(rels)
    by_path = {f.rel_path: f for f in result.files}
    assert by_path["src/app.py"].language == "python"
    assert by_path["src/util.ts"].language == "typescript"
    assert by_path["cmd/main.go"].language == "go"
    assert by_path["README.md"].language == "markdown"
    assert by_path["Dockerfile"].language == "dockerfile"
    assert by_path["bin/tool"].language is None  # only the shebang tells, read later
    app = by_path["src/app.py"]
    assert app.path == (repo / "src/app.py").resolve()
    assert app.size == len("def main():\n    return 1\n")
    assert app.mtime_ns == (repo / "src/app.py").stat().st_mtime_ns


def test_root_gitignore_globs_anchors_directories_and_negation(repo: Path) -> None:
    found = paths(scan(repo))
    assert "debug.log" not in found
    assert "important.log" in found  # `!important.log`
    assert "secret.txt" not in found  # `/secret.txt` ...
    assert "docs/secret.txt" in found  # ... is anchored to the root
    assert "cache/data.py" not in found  # `cache/` prunes the directory
    assert "lib/cache" in found  # ... but is not a file pattern


def test_nested_gitignore_applies_relative_to_its_directory(repo: Path) -> None:
    found = paths(scan(repo))
    assert "src/local_settings.py" not in found
    assert "src/local_keep.py" in found  # nested negation
    assert "src/sub/local_x.py" not in found  # unanchored: any depth below src/
    assert "other/local_x.py" in found  # but not outside src/
    assert "src/only_here.txt" not in found  # `/only_here.txt` anchored to src/
    assert "src/sub/only_here.txt" in found


def test_git_internals_info_exclude_and_project_ignore_file(repo: Path) -> None:
    found = paths(scan(repo))
    assert not any(p.startswith((".git/", ".codebase-mcp/")) for p in found)
    assert "excluded_by_info.py" not in found
    assert "docs/private/notes.md" not in found
    assert "dist/keep.js" in found  # the project ignore file re-included a default-skipped directory


def test_default_skips_virtualenvs_dependencies_caches_and_generated_files(repo: Path) -> None:
    found = paths(scan(repo))
    for prefix in (".venv/", "myenv/", "node_modules/", "src/__pycache__/", "build/", "pkg.egg-info/"):
        assert not any(p.startswith(prefix) for p in found), prefix
    for name in ("static/app.min.js", "static/app.js.map", "package-lock.json"):
        assert name not in found
    assert "doc/build/index.rst" in found  # a build/ directory without a build manifest beside it


def test_never_follows_symlinks_out_of_the_repository(repo: Path) -> None:
    result = scan(repo)
    found = paths(result)
    assert "src/link_to_secret.py" not in found
    assert not any(p.startswith("linked_dir") for p in found)
    assert all(str(f.path).startswith(str(repo.resolve())) for f in result.files)
    assert result.skipped["symlink"] == 2


def test_counts_skip_reasons(repo: Path) -> None:
    result = scan(repo)
    assert "img/logo.png" not in paths(result)
    assert result.skipped["binary"] == 1  # by extension; blob.dat is found by content when read
    assert "data/huge.txt" not in paths(result)
    assert result.skipped["too_large"] == 1
    assert result.skipped["ignored"] >= 15


def by_rel(result: ScanResult, rel: str) -> ScannedFile:
    return next(f for f in result.files if f.rel_path == rel)


def test_load_rejects_binary_content_by_nul_sniffing(repo: Path) -> None:
    assert load_file(by_rel(scan(repo), "data/blob.dat"), 4096) == "binary"


def test_load_decodes_latin1_without_failing(repo: Path) -> None:
    loaded = load_file(by_rel(scan(repo), "legacy/latin1.py"), 4096)
    assert isinstance(loaded, LoadedFile)
    assert loaded.text == "# café\nNAME = 'José'\n"
    assert loaded.line_count == 2


def test_load_strips_bom_normalises_crlf_and_hashes_raw_bytes(tmp_path: Path) -> None:
    raw = "\ufeffline one\r\nline two\r\nlast".encode()
    write(tmp_path, "win.py", raw)
    loaded = load_file(by_rel(scan_repository(tmp_path), "win.py"))
    assert isinstance(loaded, LoadedFile)
    assert loaded.text == "line one\nline two\nlast"
    assert loaded.line_count == 3
    assert loaded.content_hash == hashlib.sha256(raw).hexdigest()
    assert loaded.language == "python"


def test_load_refines_unknown_language_by_shebang(repo: Path) -> None:
    loaded = load_file(by_rel(scan(repo), "bin/tool"), 4096)
    assert isinstance(loaded, LoadedFile)
    assert loaded.language == "python"


def test_load_reports_files_that_changed_since_the_scan(repo: Path, outside: Path) -> None:
    result = scan(repo)
    gone = by_rel(result, "src/app.py")
    gone.path.unlink()
    assert load_file(gone, 4096) == "missing"
    grown = by_rel(result, "README.md")
    grown.path.write_text("z" * 5000)
    assert load_file(grown, 4096) == "too_large"
    swapped = by_rel(result, "cmd/main.go")
    swapped.path.unlink()
    os.symlink(outside / "secret.py", swapped.path)
    assert load_file(swapped, 4096) == "symlink"


def test_empty_file_loads_with_zero_lines(tmp_path: Path) -> None:
    write(tmp_path, "empty.py", "")
    loaded = load_file(by_rel(scan_repository(tmp_path), "empty.py"))
    assert isinstance(loaded, LoadedFile)
    assert (loaded.text, loaded.line_count) == ("", 0)


def test_long_ignore_files_still_decide_per_entry(tmp_path: Path) -> None:
    """Many patterns (as in real .gitignore templates) go through the combined pre-check."""
    patterns = [f"gen_{i}_*.py" for i in range(200)] + ["**/deep/target.py", "!keep_*.py", "keep_bad.py"]
    write(tmp_path, ".gitignore", "\n".join(patterns) + "\n")
    write(tmp_path, "gen_7_a.py")
    write(tmp_path, "gen_x.py")
    write(tmp_path, "a/b/deep/target.py")
    write(tmp_path, "keep_me.py")
    write(tmp_path, "keep_bad.py")
    found = paths(scan_repository(tmp_path))
    assert found == {".gitignore", "gen_x.py", "keep_me.py"}


def test_symlinked_ignore_file_is_not_followed(tmp_path: Path) -> None:
    write(tmp_path, "elsewhere/patterns", "*.py\n")
    root = tmp_path / "repo"
    write(root, "app.py")
    os.symlink(tmp_path / "elsewhere/patterns", root / ".gitignore")
    result = scan_repository(root)
    assert paths(result) == {"app.py"}
    assert result.skipped["symlink"] == 1
