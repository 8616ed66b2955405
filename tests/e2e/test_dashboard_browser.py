"""The jobs page in a real headless Chromium against a real `codebase-mcp serve --transport http`.

Latencies are printed (bench/sse_bench.py measures them properly), never asserted.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from selenium.webdriver.common.by import By

from server.mcp.models import StartIndexingResult
from tests.e2e.browser import Page, chrome
from tests.e2e.conftest import HttpServer, Processes, start_job
from tests.repos import make_python_repo

__all__ = ["chrome"]  # the fixture, for pytest


def status_is(status: str) -> str:
    """JS: does the card of job `arguments[0]` show `status`?"""
    return f"const el = document.getElementById('job-' + arguments[0]); return !!el && el.dataset.status == '{status}';"


def conn_is(state: str) -> str:
    """JS: is the connection indicator in `state` (connecting, live, reconnecting)?"""
    return f"const c = document.getElementById('conn'); return !!c && c.dataset.state === '{state}';"


def page_url(server: HttpServer, project: str = "") -> str:
    query = f"?project={project}" if project else ""
    return f"{server.base_url}/web/{query}#token={server.token}"  # the page trades it for a session cookie


async def open_page(page: Page, server: HttpServer, project: str = "") -> None:
    page.driver.get(page_url(server, project))
    await page.until(conn_is("live"), what="the stream is live")
    assert "#token" not in page.driver.current_url  # the token left the address bar


async def test_jobs_appear_live_advance_and_cancel_from_the_page(
    processes: Processes, chrome: Page, tmp_path: Path
) -> None:
    server = await processes.http_server()
    await open_page(chrome, server)  # all projects; this one does not exist yet
    chrome.shot("empty")
    repo = make_python_repo(tmp_path / "big", 400)
    project = f"e2e-{uuid.uuid4().hex[:8]}"
    async with server.client() as client:
        job: StartIndexingResult = await start_job(client, repo, project)
        started = time.monotonic()
        await chrome.until("return !!document.getElementById('job-' + arguments[0]);", job.job_id, what="job shown")
        print(f"job started after load appeared on the page after {time.monotonic() - started:.3f}s")

        seen: set[tuple[str, int]] = set()

        async def advancing() -> bool:
            state = chrome.job_state(job.job_id)
            assert state is not None
            seen.add((state["status"], state["pct"]))
            running = sorted(p for s, p in seen if s == "running" and p > 0)
            return len(set(running)) >= 2

        deadline = time.monotonic() + 120
        while not await advancing():
            assert time.monotonic() < deadline, f"progress never advanced on the page: {sorted(seen)}"
            await chrome.until("return true;")
        state = chrome.job_state(job.job_id)
        assert state is not None and state["status"] == "running"
        text = state["text"]
        assert str(repo) in text and "files indexed" in text and "started" in text and "ETA" in text, text
        chrome.shot("running")

        chrome.find(f"#job-{job.job_id} .cancel").click()
        await chrome.until(status_is("cancelled"), job.job_id, what="cancelled on the page")
        status = await client.call_tool("get_indexing_status", {"job_id": job.job_id})
        assert status.structured_content is not None and status.structured_content["status"] == "cancelled"
        assert chrome.js("return document.querySelector('#job-' + arguments[0] + ' .cancel').hidden;", job.job_id)
        chrome.shot("cancelled")


async def test_start_form_queues_a_job_and_search_shows_highlighted_results(
    processes: Processes, chrome: Page, tmp_path: Path
) -> None:
    server = await processes.http_server()
    await open_page(chrome, server)
    repo = make_python_repo(tmp_path / "small", 20)
    project = f"e2e-{uuid.uuid4().hex[:8]}"
    chrome.find("#start-path").send_keys(str(repo))
    chrome.find("#start-project").send_keys(project)
    chrome.find("#start button[type=submit]").click()
    note = await chrome.until(
        "const t = document.getElementById('start-result').textContent; return /Queued job/.test(t) && t;",
        what="queued",
    )
    job_id = note.split("Queued job ")[1].split()[0]
    await chrome.until(status_is("completed"), job_id, within=180, what="completed")
    tiers = chrome.js(
        "const el = document.getElementById('job-' + arguments[0]);"
        "return [el.querySelector('.static-pct').textContent, el.querySelector('.transformer-pct').textContent];",
        job_id,
    )
    assert tiers == ["100%", "100%"], tiers  # per-tier coverage from the job's progress
    chrome.shot("completed")

    # search within the project: pick it (the list learnt it when the job was queued)
    await chrome.until(
        "return [...document.getElementById('project').options].some(o => o.value === arguments[0]);", project
    )
    chrome.js(
        "const s = document.getElementById('project'); s.value = arguments[0]; s.dispatchEvent(new Event('change'));",
        project,
    )
    await chrome.until(conn_is("live"))
    chrome.find("#search-query").send_keys("load settings")
    chrome.find("#search button[type=submit]").click()
    await chrome.until("return document.querySelectorAll('#results li').length > 0;", what="results")
    where = [e.text for e in chrome.driver.find_elements(By.CSS_SELECTOR, "#results .where")]
    assert where and all(w.startswith("pkg/mod_") and ":" in w for w in where), where
    marks = {e.text.lower() for e in chrome.driver.find_elements(By.CSS_SELECTOR, "#results mark")}
    assert {"load", "settings"} <= marks, marks
    chrome.shot("search")

    chrome.driver.set_window_size(380, 900)  # a narrow window: one column, nothing wider than the screen
    await chrome.until("return window.innerWidth < 500;")
    overflow = chrome.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth;")
    assert overflow <= 1, f"the page is {overflow}px wider than a narrow window"
    chrome.shot("narrow")


async def test_the_page_reconnects_after_a_server_restart_and_shows_cli_runs(
    processes: Processes, chrome: Page, tmp_path: Path
) -> None:
    server = await processes.http_server()
    await open_page(chrome, server)
    server.proc.kill()  # SIGKILL: the stream breaks without a goodbye
    await chrome.until(conn_is("reconnecting"))
    chrome.shot("reconnecting")
    restarted = await processes.http_server(port=server.port)
    began = time.monotonic()
    await chrome.until(conn_is("live"), within=60)
    print(f"the page was live again {time.monotonic() - began:.3f}s after the new server answered")

    repo = make_python_repo(tmp_path / "cli", 10)
    project = f"e2e-{uuid.uuid4().hex[:8]}"
    cli = processes.spawn("index", str(repo), "--project", project)
    # (the repository's watcher may queue a refresh of its own: that card says 'worker')
    card = await chrome.until(
        "const el = [...document.querySelectorAll('.job')].find(e =>"
        "  e.querySelector('.path').textContent === arguments[0] && e.querySelector('.origin').textContent === 'cli');"
        "return el && el.dataset.status === 'completed' && el.id;",
        str(repo), within=180, what="the CLI run, completed",
    )  # fmt: skip
    assert cli.popen.wait(timeout=60) == 0, cli.log_tail()
    assert chrome.js("return document.getElementById(arguments[0]).dataset.status;", card) == "completed"
    assert restarted.proc.alive()
    chrome.shot("cli-run")
