"""A real watcher (watchfiles) on temporary repositories, real jobs, the real database."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import asyncpg
import pytest

from server.app import App
from server.db.registry import Project
from server.embeddings import CODE_EMBEDDER_NAME, Embedder
from server.embeddings.local import LOCAL_EMBEDDER_NAME
from server.search.engine import CodeSearch
from server.search.request import SearchRequest
from server.settings import Settings
from server.stacks import task_stack
from server.watch.service import WatchService
from tests.fakes import FakeEmbedder
from tests.polling import wait_for
from tests.repos import make_python_repo, write_files

FAST = {"watch_debounce_ms": 100, "watch_lease_retry_seconds": 0.5, "watch_root_check_seconds": 0.3}
WITHIN = 60.0  # generous: a busy machine; latencies are measured by bench/watch_bench.py, not here


@pytest.fixture
def app_embedder(fake_embedder: FakeEmbedder) -> Embedder:
    return fake_embedder  # the subject is watching, not embedding


async def indexed(app: App, project_id: str, repo: Path) -> tuple[Project, asyncpg.Pool]:
    project = (await app.resolver.resolve(project_id, None, create=True)).project
    assert app.worker is not None
    await app.worker._add_project(project)
    await app.index(project, repo)
    return project, await app.cluster.pool(project.database_name)


async def settled(pool: asyncpg.Pool) -> bool:
    active: int = await pool.fetchval("SELECT count(*) FROM indexing_jobs WHERE status IN ('pending', 'running')")
    return active == 0


async def watch(app: App, repo: Path, pool: asyncpg.Pool, **settings: object) -> WatchService:
    for name, value in {**FAST, **settings}.items():
        setattr(app.settings, name, value)
    service = await app.start_watching([repo.resolve()])
    assert len(service.watched) == 1
    (w,) = service.watched.values()
    await asyncio.wait_for(w.watcher.watching.wait(), 30)
    await wait_for(lambda: settled(pool), within=WITHIN, what="the catch-up job")
    return service


async def files(pool: asyncpg.Pool) -> dict[str, bool]:
    return {r["rel_path"]: r["is_deleted"] for r in await pool.fetch("SELECT rel_path, is_deleted FROM files")}


async def content(pool: asyncpg.Pool, rel_path: str) -> str:
    rows = await pool.fetch(
        "SELECT c.content FROM chunks c JOIN files f ON f.id = c.file_id WHERE f.rel_path = $1 ORDER BY c.start_line",
        rel_path,
    )
    return "\n".join(r["content"] for r in rows)


async def jobs(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT kind, status, metadata FROM indexing_jobs ORDER BY created_at"
    )
    return rows


def job_paths(row: asyncpg.Record) -> list[str]:
    meta = json.loads(row["metadata"]) if isinstance(row["metadata"], str) else row["metadata"]
    return list(meta.get("paths") or [])


async def test_edits_creations_deletions_and_renames_reach_search(app: App, tmp_path: Path, project_id: str) -> None:
    repo = make_python_repo(tmp_path / "repo", 4)
    _, pool = await indexed(app, project_id, repo)
    await watch(app, repo, pool)
    before = len(await jobs(pool))

    pkg = repo / "pkg"
    (pkg / "mod_0000.py").write_text("def freshly_edited_identifier():\n    return 'edited'\n")
    (pkg / "created.py").write_text("def freshly_created_identifier():\n    return 'created'\n")
    (pkg / "mod_0001.py").unlink()
    (pkg / "mod_0002.py").rename(pkg / "renamed.py")
    (repo / "moved_pkg").mkdir()
    os.rename(pkg / "mod_0003.py", repo / "moved_pkg" / "inner.py")

    async def reflected() -> bool:
        f = await files(pool)
        return (
            f.get("pkg/created.py") is False and f.get("pkg/renamed.py") is False
            and f.get("moved_pkg/inner.py") is False
            and f["pkg/mod_0001.py"] and f["pkg/mod_0002.py"] and f["pkg/mod_0003.py"]
            and "freshly_edited_identifier" in await content(pool, "pkg/mod_0000.py")
        )  # fmt: skip

    await wait_for(reflected, within=WITHIN, what="the changes in the index")
    await wait_for(lambda: settled(pool), within=WITHIN)
    new_jobs = (await jobs(pool))[before:]
    assert new_jobs and {j["kind"] for j in new_jobs} == {"refresh"}
    assert all(j["status"] == "completed" for j in new_jobs)

    search = CodeSearch.from_app(app)
    found = await search.search(SearchRequest("freshly_created_identifier", project_id, None, None, None, 5, 0))
    assert found.results[0].file_path == "pkg/created.py"
    assert found.pending_changes is None
    stale = await search.search(SearchRequest("load_settings_1", project_id, None, None, None, 10, 0))
    assert "pkg/mod_0001.py" not in {h.file_path for h in stale.results}  # deleted: out of the results
    assert "pkg/renamed.py" in {
        h.file_path
        for h in (await search.search(SearchRequest("Service2", project_id, None, None, None, 10, 0))).results
    }


async def test_ignored_paths_version_control_and_editor_temporaries_make_no_jobs(
    app: App, tmp_path: Path, project_id: str
) -> None:
    repo = make_python_repo(tmp_path / "repo", 2)
    write_files(repo, {".gitignore": "*.log\ngenerated/\n", ".git/HEAD": "ref: refs/heads/main\n"})
    _, pool = await indexed(app, project_id, repo)
    await watch(app, repo, pool)
    before = len(await jobs(pool))

    (repo / "debug.log").write_text("noise\n")
    (repo / "generated").mkdir()
    (repo / "generated" / "out.py").write_text("x = 1\n")
    (repo / "node_modules" / "pkg").mkdir(parents=True)
    (repo / "node_modules" / "pkg" / "index.js").write_text("module.exports = 1\n")
    (repo / "pkg" / "__pycache__").mkdir()
    (repo / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\x00\x01")
    (repo / ".git" / "index").write_bytes(b"DIRC")
    (repo / ".git" / "objects").mkdir()
    (repo / ".git" / "objects" / "ab").write_bytes(b"blob")
    for temp in ("mod_0000.py~", ".#mod_0000.py", "#mod_0000.py#", "4913", "mod_0000.py___jb_tmp___", ".x.py.swp"):
        (repo / "pkg" / temp).write_text("temporary\n")
        (repo / "pkg" / temp).unlink()
    await asyncio.sleep(1.0)  # several debounce windows: anything enqueued for these would be there by now
    (repo / "pkg" / "sentinel.py").write_text("def sentinel_after_the_noise():\n    return 1\n")

    await wait_for(lambda: _present(pool, "pkg/sentinel.py"), within=WITHIN, what="the sentinel file")
    await wait_for(lambda: settled(pool), within=WITHIN)
    new_jobs = (await jobs(pool))[before:]
    assert [job_paths(j) for j in new_jobs] == [["pkg/sentinel.py"]]
    indexed_now = await files(pool)
    assert not any(p.endswith((".log", ".js", ".pyc", "~", "#", "4913", "___")) for p in indexed_now)
    assert "generated/out.py" not in indexed_now


async def _present(pool: asyncpg.Pool, rel_path: str) -> bool:
    return (await files(pool)).get(rel_path) is False


async def test_changes_within_the_debounce_window_become_one_refresh_with_the_last_content(
    app: App, tmp_path: Path, project_id: str
) -> None:
    repo = make_python_repo(tmp_path / "repo", 2)
    _, pool = await indexed(app, project_id, repo)
    await watch(app, repo, pool, watch_debounce_ms=400)
    before = len(await jobs(pool))

    for i in range(20):
        (repo / "pkg" / f"burst_{i:02d}.py").write_text(f"def burst_{i}():\n    return {i}\n")
    target = repo / "pkg" / "mod_0000.py"
    for version in range(5):  # saved five times in quick succession
        target.write_text(f"def saved_version_{version}():\n    return {version}\n")

    await wait_for(lambda: _present(pool, "pkg/burst_19.py"), within=WITHIN)
    await wait_for(lambda: settled(pool), within=WITHIN)
    new_jobs = (await jobs(pool))[before:]
    assert len(new_jobs) == 1 and new_jobs[0]["kind"] == "refresh"
    assert set(job_paths(new_jobs[0])) == {f"pkg/burst_{i:02d}.py" for i in range(20)} | {"pkg/mod_0000.py"}
    stored = await content(pool, "pkg/mod_0000.py")
    assert "saved_version_4" in stored and "saved_version_3" not in stored

    # two saves further apart than the window: two refreshes, still the last content
    target.write_text("def later_save_one():\n    return 1\n")
    await asyncio.sleep(1.5)
    target.write_text("def later_save_two():\n    return 2\n")
    await wait_for(lambda: _has(pool, "pkg/mod_0000.py", "later_save_two"), within=WITHIN)
    assert "later_save_one" not in await content(pool, "pkg/mod_0000.py")


async def _has(pool: asyncpg.Pool, rel_path: str, text: str) -> bool:
    return text in await content(pool, rel_path)


async def test_a_mass_change_becomes_one_incremental_index_job(app: App, tmp_path: Path, project_id: str) -> None:
    repo = make_python_repo(tmp_path / "repo", 2)
    _, pool = await indexed(app, project_id, repo)
    await watch(app, repo, pool, watch_mass_change_files=10)
    before = len(await jobs(pool))
    for i in range(30):
        (repo / "pkg" / f"generated_{i:02d}.py").write_text(f"def generated_{i}():\n    return {i}\n")
    await wait_for(lambda: _present(pool, "pkg/generated_29.py"), within=WITHIN)
    await wait_for(lambda: settled(pool), within=WITHIN)
    new_jobs = (await jobs(pool))[before:]
    assert new_jobs[0]["kind"] == "index"
    assert all(j["kind"] == "index" or not job_paths(j) for j in new_jobs)  # no refresh names paths
    present = await files(pool)
    assert all(f"pkg/generated_{i:02d}.py" in present for i in range(30))


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
async def test_a_branch_switch_is_reindexed(app: App, tmp_path: Path, project_id: str) -> None:
    repo = make_python_repo(tmp_path / "repo", 3)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]

    async def run(*args: str) -> None:
        await asyncio.to_thread(subprocess.run, [*git, *args], check=True)

    await run("init", "-q", "-b", "main")
    await run("add", "-A")
    await run("commit", "-qm", "main")
    await run("checkout", "-qb", "feature")
    (repo / "pkg" / "mod_0000.py").write_text("def only_on_the_feature_branch():\n    return 1\n")
    (repo / "pkg" / "mod_0001.py").unlink()
    await run("commit", "-qam", "feature")
    await run("checkout", "-q", "main")
    _, pool = await indexed(app, project_id, repo)
    await watch(app, repo, pool)
    before = len(await jobs(pool))

    await run("checkout", "-q", "feature")

    async def switched() -> bool:
        f = await files(pool)
        return f["pkg/mod_0001.py"] and "only_on_the_feature_branch" in await content(pool, "pkg/mod_0000.py")

    await wait_for(switched, within=WITHIN, what="the feature branch in the index")

    # git writes the work tree before .git/HEAD: on a busy machine the files can come in a batch of
    # their own, and their refresh may finish before the batch with HEAD is handed over
    async def reindexed() -> bool:
        kinds = [j["kind"] for j in (await jobs(pool))[before:]]
        return "index" in kinds and await settled(pool)

    await wait_for(reindexed, within=WITHIN, what="an index job for the moved .git/HEAD")
    assert await switched()  # the index run left the feature branch in place


async def test_watching_survives_the_repository_folder_being_removed_and_recreated(
    app: App, tmp_path: Path, project_id: str
) -> None:
    repo = make_python_repo(tmp_path / "repo", 2)
    _, pool = await indexed(app, project_id, repo)
    service = await watch(app, repo, pool)
    (w,) = service.watched.values()

    shutil.rmtree(repo)
    await wait_for(lambda: not w.watcher.watching.is_set(), within=WITHIN, what="the watch to end")
    repo.mkdir()
    (repo / "fresh.py").write_text("def after_the_folder_came_back():\n    return 1\n")

    async def reconciled() -> bool:
        f = await files(pool)
        return f.get("fresh.py") is False and f["pkg/mod_0000.py"] and f["README.md"]

    await wait_for(reconciled, within=WITHIN, what="the recreated folder in the index")
    await wait_for(w.watcher.watching.is_set, within=WITHIN, what="the new watch")
    (repo / "fresh.py").write_text("def edited_in_the_recreated_folder():\n    return 2\n")
    edited = "edited_in_the_recreated_folder"
    await wait_for(lambda: _has(pool, "fresh.py", edited), within=WITHIN, what="an edit after recreation")


async def test_only_one_watch_service_takes_a_repository_and_the_other_takes_over(
    app: App, tmp_path: Path, project_id: str
) -> None:
    repo = make_python_repo(tmp_path / "repo", 2)
    _, pool = await indexed(app, project_id, repo)
    first = await watch(app, repo, pool)
    assert app.cluster is not None
    second = WatchService(cluster=app.cluster, registry=app.registry, settings=app.settings, roots=[repo.resolve()])
    await second.start()
    try:
        await asyncio.sleep(1.5)  # several lease retries
        assert len(first.watched) == 1 and second.watched == {}
        assert not second.leases.connected  # holding no lease, it keeps no connection for leases open
        await first.stop()  # its lease is released: the second service takes the repository
        await wait_for(lambda: len(second.watched) == 1, within=10, what="the takeover")
        (w,) = second.watched.values()
        await asyncio.wait_for(w.watcher.watching.wait(), 30)
        (repo / "pkg" / "mod_0000.py").write_text("def seen_by_the_second_watcher():\n    return 1\n")
        await wait_for(lambda: _has(pool, "pkg/mod_0000.py", "seen_by_the_second_watcher"), within=WITHIN)
    finally:
        await second.stop()


async def test_stop_ends_the_supervisor_even_when_kicked_at_the_same_moment(
    app: App, tmp_path: Path, project_id: str
) -> None:
    # A job's end kicks the supervisor; a kick that lands in the loop step of stop()'s cancel once
    # made asyncio.wait_for (Python 3.11) return instead of raising, and the supervisor ran forever.
    repo = make_python_repo(tmp_path / "repo", 2)
    _, pool = await indexed(app, project_id, repo)
    service = await watch(app, repo, pool)
    supervisor = service._supervisor
    assert supervisor is not None

    def idle() -> bool:  # waiting for a kick or its timer, not inside a tick
        stack = task_stack(supervisor)
        return "in _supervise" in stack and "in tick" not in stack and "in wait" in stack

    await wait_for(idle, within=WITHIN, interval=0.01, what=lambda: f"an idle supervisor:\n{task_stack(supervisor)}")
    service.kick()
    await asyncio.wait_for(service.stop(), 15)
    assert supervisor.done() and not service.watched and not service.leases.connected


class _NamedFake(FakeEmbedder):
    """The token-hash fake under a product model's name (the take-over is decided by names)."""

    def __init__(self, name: str) -> None:
        super().__init__(384)
        self._name = name

    @property
    def name(self) -> str:
        return self._name


async def test_a_project_of_the_replaced_model_is_taken_over_and_refilled_once_serving_starts(
    settings: Settings, tmp_path: Path, project_id: str
) -> None:
    """An upgrade from the plain s8 model: `serve` with the code model watches the repository, and its
    catch-up job takes the project over and embeds every chunk again, without anyone re-indexing."""
    repo = make_python_repo(tmp_path / "repo", 4)
    before = App(settings, embedder=_NamedFake(LOCAL_EMBEDDER_NAME))
    await before.start()
    try:
        _, pool = await indexed(before, project_id, repo)
        chunks = await pool.fetchval("SELECT count(*) FROM chunks")
        assert chunks > 0 and await pool.fetchval("SELECT count(*) FROM chunks WHERE embedding IS NULL") == 0
    finally:
        await before.close()

    tuned = _NamedFake(CODE_EMBEDDER_NAME)
    for name, value in FAST.items():
        setattr(settings, name, value)
    after = App(settings, embedder=tuned)
    await after.start(watch=True)  # as `serve` starts: watching every indexed repository
    try:
        pool = await after.cluster.pool(
            (await after.resolver.resolve(project_id, None, create=False)).project.database_name
        )

        async def refilled() -> bool:
            stored = await pool.fetchval("SELECT value FROM project_config WHERE key = 'embedder'")
            missing = await pool.fetchval("SELECT count(*) FROM chunks WHERE embedding IS NULL")
            return json.loads(stored)["name"] == CODE_EMBEDDER_NAME and missing == 0 and await settled(pool)

        await wait_for(refilled, within=WITHIN, what="the take-over and the refill")
        assert tuned.texts_embedded >= chunks  # the new model's vectors, not the old ones kept
        assert [(j["kind"], j["status"]) for j in await jobs(pool)][-1] == ("index", "completed")
    finally:
        await after.close()
