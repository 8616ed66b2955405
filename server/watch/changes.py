"""From raw file-system events to what the index must do about them (pure logic, no I/O).

The watcher hands over a batch of (change, absolute path) pairs; `classify` keeps the paths that
can matter (relative to the root, without version-control churn and editor temporaries) and
notes the events that change more than those paths: an ignore file (any file may now be in or
out), `.git/HEAD` (a checkout, reset or rebase) and the root itself. The scanner's rules then
decide which of the paths are indexable (`server.indexer.scanner.scan_repository(paths=...)`),
and `plan` turns the result into one job.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Literal

from server.fs.names import escape_name
from server.indexer.scanner import ALWAYS_SKIPPED_DIRS, DEFAULT_IGNORE_FILE, is_editor_temp

# Version-control files that change what is indexed, or signal that much of the tree changed.
HEAD_FILE = ".git/HEAD"
RULE_FILES = frozenset({DEFAULT_IGNORE_FILE, ".git/info/exclude"})
IGNORE_FILE_NAME = ".gitignore"


@dataclass(frozen=True, slots=True)
class ChangeSet:
    paths: frozenset[str] = frozenset()  # relative, POSIX, escaped (server/fs/names.py); files or folders
    rules_changed: bool = False  # an ignore file was written or removed
    head_moved: bool = False  # .git/HEAD was rewritten
    root_changed: bool = False  # the root folder itself was removed, replaced or created

    @property
    def empty(self) -> bool:
        return not (self.paths or self.rules_changed or self.head_moved or self.root_changed)


def classify(root: str, raw: Iterable[tuple[int, str]]) -> ChangeSet:
    """Keep what can matter from a batch of raw events under `root` (an absolute path)."""
    prefix = root.rstrip(os.sep) + os.sep
    paths: set[str] = set()
    rules = head = root_changed = False
    for _change, path in raw:
        if path == root or path + os.sep == prefix:
            root_changed = True
            continue
        if not path.startswith(prefix):
            continue
        rel = escape_name(path[len(prefix) :].replace(os.sep, "/"))  # as `rel_path` is stored
        top, _, _rest = rel.partition("/")
        if top in ALWAYS_SKIPPED_DIRS:
            if rel == HEAD_FILE:
                head = True
            elif rel in RULE_FILES:
                rules = True
            continue  # version-control internals, other tools' data: churn
        name = rel.rsplit("/", 1)[-1]
        if is_editor_temp(name):
            continue
        if name == IGNORE_FILE_NAME:
            rules = True
        paths.add(rel)
    return ChangeSet(frozenset(paths), rules, head, root_changed)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to enqueue: nothing, a refresh of some paths, or an incremental index of everything."""

    action: Literal["none", "refresh", "index"]
    paths: tuple[str, ...] = ()
    reason: str = ""
    ignored: int = 0  # paths the scanner's rules dropped


def plan(changes: ChangeSet, ignored: Collection[str], mass_change_files: int) -> Plan:
    """`ignored`: the changed paths the scanner's rules exclude (`ScanResult.ignored_paths`)."""
    relevant = sorted(changes.paths.difference(ignored))
    dropped = len(changes.paths) - len(relevant)
    if changes.root_changed:
        return Plan("index", reason="the repository folder was replaced or recreated", ignored=dropped)
    if changes.head_moved:
        return Plan("index", reason=".git/HEAD moved (checkout, reset or rebase)", ignored=dropped)
    if changes.rules_changed:
        return Plan("index", reason="an ignore file changed", ignored=dropped)
    if len(relevant) > mass_change_files:
        return Plan("index", reason=f"{len(relevant)} paths changed at once", ignored=dropped)
    if not relevant:
        return Plan("none", ignored=dropped)
    return Plan("refresh", tuple(relevant), f"{len(relevant)} paths changed", ignored=dropped)
