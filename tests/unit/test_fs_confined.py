"""Opening files without following a symlink anywhere on the way, even one swapped in later."""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from server.fs.confined import PathEscapeError, open_beneath, open_directory, read_beneath, split_relative
from server.indexer.scanner import LoadedFile, load_file, scan_repository

pytestmark = pytest.mark.unit


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "sub" / "deep" / "a.py").write_text("inside\n")
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "a.py").write_text("OUTSIDE\n")
    return root


def test_reads_a_plain_tree(tree: Path) -> None:
    data, st = read_beneath(tree, ["sub", "deep", "a.py"], 100)
    assert data == b"inside\n" and st.st_size == 7
    os.close(open_directory(tree))


def test_a_directory_swapped_for_a_symlink_is_refused(tree: Path) -> None:
    shutil.rmtree(tree / "sub")
    (tree / "sub").symlink_to(tree.parent / "outside")
    assert (tree / "sub" / "deep" / "a.py").read_text() == "OUTSIDE\n"  # what a plain open() would read
    with pytest.raises(PathEscapeError, match="sub is a symbolic link") as caught:
        open_beneath(tree, ["sub", "deep", "a.py"])
    assert caught.value.errno == errno.ELOOP


def test_a_symlinked_root_or_file_is_refused(tree: Path) -> None:
    link = tree.parent / "link"
    link.symlink_to(tree)
    with pytest.raises(PathEscapeError, match="link is a symbolic link"):
        open_directory(link)
    with pytest.raises(PathEscapeError):
        open_beneath(link, ["sub", "deep", "a.py"])
    (tree / "f.py").symlink_to(tree.parent / "outside" / "deep" / "a.py")
    with pytest.raises(PathEscapeError, match=r"f\.py is a symbolic link"):
        open_beneath(tree, ["f.py"])


def test_directories_replaced_by_files_and_fifos_are_refused(tree: Path) -> None:
    os.mkfifo(tree / "pipe.py")
    with pytest.raises(PathEscapeError, match="not a regular file"):  # and does not hang
        open_beneath(tree, ["pipe.py"])
    with pytest.raises(PathEscapeError, match="not a regular file"):
        open_beneath(tree, ["sub"])
    (tree / "plain").write_text("x")
    with pytest.raises(PathEscapeError, match="not a directory"):
        open_beneath(tree, ["plain", "a.py"])
    with pytest.raises(FileNotFoundError):
        open_beneath(tree, ["missing.py"])


@pytest.mark.parametrize("parts", [[".."], ["sub", "..", "x"], ["."], [""], ["a/b"]])
def test_dot_segments_and_slashes_are_refused(tree: Path, parts: list[str]) -> None:
    with pytest.raises(PathEscapeError):
        open_beneath(tree, parts)


def test_split_relative() -> None:
    assert split_relative("a/b/c.py") == ["a", "b", "c.py"]
    for bad in ("/etc/passwd", "a/../b", "./a"):
        with pytest.raises(PathEscapeError):
            split_relative(bad)


def test_load_file_after_a_parent_directory_was_swapped(tree: Path) -> None:
    """Scanned inside; before it is read, `sub` becomes a symlink to a tree with the same names."""
    scanned = {f.rel_path: f for f in scan_repository(tree).files}
    shutil.rmtree(tree / "sub")
    (tree / "sub").symlink_to(tree.parent / "outside")
    assert load_file(scanned["sub/deep/a.py"]) == "symlink"


def test_scan_does_not_enter_a_directory_swapped_while_walking(tree: Path) -> None:
    """Race the walk many times: whatever is listed was reached through real directories only."""
    outside = tree.parent / "outside"
    for i in range(30):
        (outside / f"o{i}.py").write_text("x")
    stop = threading.Event()

    def flip() -> None:
        spare = tree.parent / "spare"
        while not stop.is_set():
            os.rename(tree / "sub", spare)
            (tree / "sub").symlink_to(outside)
            time.sleep(0.0002)
            os.unlink(tree / "sub")
            os.rename(spare, tree / "sub")
            time.sleep(0.0002)

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            for f in scan_repository(tree).files:
                assert not f.rel_path.startswith("sub/o"), f.rel_path  # a name only found outside
                assert f.rel_path == "sub/deep/a.py"
    finally:
        stop.set()
        flipper.join()
    loaded = load_file({f.rel_path: f for f in scan_repository(tree).files}["sub/deep/a.py"])
    assert isinstance(loaded, LoadedFile) and loaded.text == "inside\n"
