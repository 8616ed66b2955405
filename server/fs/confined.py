"""Open directories and files of a repository without following any symbolic link on the way.

A path checked when a job was queued can be changed before (or while) it runs: `rm -r
root/repo && ln -s /elsewhere root/repo`. Checking a path and then opening it by name is a race;
walking it one component at a time from '/' with `openat(..., O_NOFOLLOW)` is not: whatever the
path has become, what is opened is reached through real directories only, so it lies inside the
tree that was validated. A symlink anywhere on the way fails the open with `PathEscapeError`.

Repository paths are stored resolved (no symlinks), so this costs a few `openat` calls per file
and changes nothing for legitimate trees.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
# O_NONBLOCK: a FIFO swapped in for a file must not hang the reader (regular files ignore it).
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC | getattr(os, "O_BINARY", 0)


class PathEscapeError(OSError):
    """A component on the way is a symbolic link (or no longer a directory): the path left its tree."""


def _parts(path: str | PurePosixPath) -> list[str]:
    parts = [p for p in str(path).split("/") if p]
    for part in parts:
        if part in (".", ".."):
            raise PathEscapeError(errno.EINVAL, f"'{part}' segment in {path!s}")
    return parts


def _open_at(parent: int, name: str, flags: int, shown: str) -> int:
    try:
        return os.open(name, flags, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            try:
                mode = os.lstat(name, dir_fd=parent).st_mode
            except OSError:
                raise exc from None
            if stat.S_ISLNK(mode):
                raise PathEscapeError(errno.ELOOP, f"{shown} is a symbolic link") from None
            if not stat.S_ISDIR(mode) and flags & os.O_DIRECTORY:
                raise PathEscapeError(errno.ENOTDIR, f"{shown} is not a directory") from None
        raise


def open_directory(path: str | Path) -> int:
    """A descriptor of the absolute directory `path`, reached from '/' without following symlinks."""
    text = str(path)
    if not text.startswith("/"):
        raise ValueError(f"{text!r} is not absolute")
    fd = os.open("/", DIR_FLAGS)
    shown = ""
    try:
        for part in _parts(text):
            shown += "/" + part
            child = _open_at(fd, part, DIR_FLAGS, shown)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_beneath(root: str | Path, rel_parts: Sequence[str]) -> int:
    """A descriptor of the regular file `root/rel_parts...`, no symlink followed anywhere on the way."""
    if not rel_parts:
        raise ValueError("no file named")
    for part in rel_parts:
        if part in ("", ".", "..") or "/" in part:
            raise PathEscapeError(errno.EINVAL, f"bad path component {part!r}")
    fd = open_directory(root)
    shown = str(root).rstrip("/")
    try:
        for part in rel_parts[:-1]:
            shown += "/" + part
            child = _open_at(fd, part, DIR_FLAGS, shown)
            os.close(fd)
            fd = child
        shown += "/" + rel_parts[-1]
        file_fd = _open_at(fd, rel_parts[-1], FILE_FLAGS, shown)
    finally:
        os.close(fd)
    try:
        if not stat.S_ISREG(os.fstat(file_fd).st_mode):
            raise PathEscapeError(errno.EINVAL, f"{shown} is not a regular file")
    except BaseException:
        os.close(file_fd)
        raise
    return file_fd


def read_beneath(root: str | Path, rel_parts: Sequence[str], limit: int) -> tuple[bytes, os.stat_result]:
    """Up to `limit` bytes of a file under `root` (see `open_beneath`) and its stat."""
    fd = open_beneath(root, rel_parts)
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        return handle.read(limit), st


def split_relative(rel: str) -> list[str]:
    """'a/b/c.py' → ['a', 'b', 'c.py'] (refusing '.', '..' and absolute paths)."""
    if rel.startswith("/"):
        raise PathEscapeError(errno.EINVAL, f"{rel!r} is absolute")
    return _parts(rel)
