"""Loaded by every Python child whose PYTHONPATH starts here: records each socket connect and
name lookup the process makes (audit events, PEP 578) to $NETAUDIT_LOG, one JSON line each."""

from __future__ import annotations

import json
import os
import socket
import sys

_LOG = os.environ.get("NETAUDIT_LOG")


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _record(kind: str, host: object, port: object) -> None:
    assert _LOG is not None
    line = {"pid": os.getpid(), "kind": kind, "host": _text(host), "port": _text(port)}
    with open(_LOG, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


def _hook(event: str, args: tuple[object, ...]) -> None:
    if event == "socket.connect":
        sock, address = args
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            assert isinstance(address, tuple)
            _record("connect", address[0], address[1])
    elif event == "socket.getaddrinfo":
        _record("getaddrinfo", args[0], args[1])


if _LOG:
    sys.addaudithook(_hook)
