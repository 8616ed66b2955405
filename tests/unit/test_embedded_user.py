"""The system user the embedded PostgreSQL runs as under root: made once, under a lock, even when
several processes start at once (test workers on a new machine), and a clear error when it can't be."""

from __future__ import annotations

import pwd
import subprocess
from typing import Any

import pytest

from server.db import embedded

ENTRY = pwd.struct_passwd(("pgserver", "x", 999, 999, "", "/home/pgserver", "/bin/bash"))


def _users(monkeypatch: pytest.MonkeyPatch, present: list[bool]) -> None:
    """`pwd.getpwnam` finds the user once `present` says so, one answer per call."""

    def getpwnam(name: str) -> pwd.struct_passwd:
        assert name == "pgserver"
        if present.pop(0):
            return ENTRY
        raise KeyError(name)

    monkeypatch.setattr(pwd, "getpwnam", getpwnam)


def _useradd(monkeypatch: pytest.MonkeyPatch, returncode: int, stderr: str, calls: list[list[str]]) -> None:
    def run(args: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        return subprocess.CompletedProcess(args, returncode, "", stderr)

    monkeypatch.setattr(subprocess, "run", run)


@pytest.mark.unit
def test_an_existing_user_is_used_without_useradd(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    _users(monkeypatch, [True])
    _useradd(monkeypatch, 0, "", calls)
    assert embedded._ensure_run_as_user() == ENTRY
    assert calls == []


@pytest.mark.unit
def test_a_user_made_while_waiting_for_the_lock_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    _users(monkeypatch, [False, True])
    _useradd(monkeypatch, 0, "", calls)
    assert embedded._ensure_run_as_user() == ENTRY
    assert calls == []


@pytest.mark.unit
def test_a_missing_user_is_made_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    _users(monkeypatch, [False, False, True])
    _useradd(monkeypatch, 0, "", calls)
    assert embedded._ensure_run_as_user() == ENTRY
    assert calls == [["useradd", "-s", "/bin/bash", "pgserver"]]


@pytest.mark.unit
def test_a_user_that_cannot_be_made_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _users(monkeypatch, [False, False, False])
    _useradd(monkeypatch, 1, "useradd: Permission denied.", [])
    with pytest.raises(embedded.EmbeddedPostgresError, match=r"pgserver.*useradd exited 1: useradd: Permission denied"):
        embedded._ensure_run_as_user()
