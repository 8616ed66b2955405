"""From raw watcher events to one job: what is kept, what is churn, what is a mass change."""

from __future__ import annotations

import pytest

from server.watch.changes import ChangeSet, classify, plan

ROOT = "/srv/repo"
ADDED, MODIFIED, DELETED = 1, 2, 3


def events(*rels: str, change: int = MODIFIED) -> set[tuple[int, str]]:
    return {(change, f"{ROOT}/{rel}" if rel else ROOT) for rel in rels}


def test_keeps_relative_paths_of_files_and_folders() -> None:
    changes = classify(ROOT, events("src/app.py", "src/new_pkg") | events("old.py", change=DELETED))
    assert changes.paths == {"src/app.py", "src/new_pkg", "old.py"}
    assert not (changes.rules_changed or changes.head_moved or changes.root_changed)


def test_version_control_churn_and_editor_temporaries_are_dropped() -> None:
    raw = events(
        ".git/index", ".git/objects/ab/cdef", ".git/HEAD.lock", ".git/refs/heads/main", ".hg/store/x",
        ".codebase-mcp/cache",
        "src/app.py~", "src/.#app.py", "src/#app.py#", "src/4913", "src/app.py___jb_tmp___", "src/.app.py.swp",
        "src/.app.py.swx",
    )  # fmt: skip
    changes = classify(ROOT, raw)
    assert changes.empty


def test_head_ignore_files_and_the_root_are_noted() -> None:
    assert classify(ROOT, events(".git/HEAD")).head_moved
    for rule_file in (".gitignore", "src/.gitignore", ".codebase-mcp/ignore", ".git/info/exclude"):
        assert classify(ROOT, events(rule_file)).rules_changed, rule_file
    assert classify(ROOT, events("", change=DELETED)).root_changed
    assert classify(ROOT, {(ADDED, "/srv/repository-next/a.py")}).empty  # a sibling folder with a common prefix


def test_plan_refreshes_the_paths_the_rules_keep() -> None:
    changes = ChangeSet(frozenset({"src/a.py", "src/b.py", "node_modules/x.js"}))
    decided = plan(changes, ignored={"node_modules/x.js"}, mass_change_files=10)
    assert (decided.action, decided.paths, decided.ignored) == ("refresh", ("src/a.py", "src/b.py"), 1)
    assert plan(changes, ignored=changes.paths, mass_change_files=10).action == "none"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (ChangeSet(frozenset(f"f{i}.py" for i in range(11))), "11 paths changed at once"),
        (ChangeSet(frozenset({"a.py"}), head_moved=True), ".git/HEAD moved"),
        (ChangeSet(rules_changed=True), "an ignore file changed"),
        (ChangeSet(root_changed=True), "replaced or recreated"),
    ],
)
def test_mass_changes_become_one_index_job(changes: ChangeSet, reason: str) -> None:
    decided = plan(changes, ignored=(), mass_change_files=10)
    assert decided.action == "index"
    assert reason in decided.reason


def test_exactly_the_limit_is_still_a_refresh() -> None:
    changes = ChangeSet(frozenset(f"f{i}.py" for i in range(10)))
    assert plan(changes, ignored=(), mass_change_files=10).action == "refresh"
