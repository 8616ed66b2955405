"""The part of a repository a scan is restricted to: some files and folders, by relative path."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable


def normalize_rel_path(path: str) -> str:
    """A repository-relative path in the form `rel_path` uses: POSIX, no leading "./" or "/"."""
    parts = [p for p in path.replace(os.sep, "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"path {path!r} leaves the repository")
    return "/".join(parts)


class PathScope:
    """Restricts a walk to some paths: files, or folders standing for everything below them.

    The walk still enters every folder on the way down, so each path is judged by exactly the
    rules a full scan applies (every .gitignore above it, the defaults beside it). Requested paths
    that the rules exclude are collected, also when they no longer exist (judged by the rules of
    the deepest folder still there).
    """

    def __init__(self, paths: Iterable[str]) -> None:
        self.requested = {normalize_rel_path(p) for p in paths}
        self.ancestors: set[str] = set()  # "a/", "a/b/": folders on the way to a requested path
        self.children: dict[str, set[str]] = {}  # folder -> names needed in it
        for path in self.requested:
            parts = path.split("/") if path else []
            for depth, name in enumerate(parts):
                folder = "".join(p + "/" for p in parts[:depth])
                self.children.setdefault(folder, set()).add(name)
                if depth:
                    self.ancestors.add(folder)
        self.ignored: set[str] = set()

    def covers(self, rel: str) -> bool:
        """`rel` is requested, or lies in a requested folder."""
        if rel in self.requested or "" in self.requested:
            return True
        cut = rel.find("/")
        while cut != -1:
            if rel[:cut] in self.requested:
                return True
            cut = rel.find("/", cut + 1)
        return False

    def wants(self, rel: str) -> bool:
        return rel + "/" in self.ancestors or self.covers(rel)

    def exclude(self, rel: str) -> None:
        """`rel` (a file or folder the walk met) is left out: so is every requested path at or below it."""
        if rel in self.requested:
            self.ignored.add(rel)
        if rel + "/" in self.ancestors:
            self.ignored.update(p for p in self.requested if p.startswith(rel + "/"))

    def judge_missing(self, rel_dir: str, names: set[str], ignored: Callable[[str, str, bool], bool]) -> None:
        """After listing `rel_dir` (its entries' `names`): requested names missing from it are
        judged by `ignored(name, rel, is_dir)`, the rules of that folder."""
        for name in self.children.get(rel_dir, ()):
            if name not in names:
                rel = rel_dir + name
                if ignored(name, rel, rel + "/" in self.ancestors):
                    self.exclude(rel)
