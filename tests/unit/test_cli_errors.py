"""How the command line turns failures into one line: which errors count, which server, which reason."""

from __future__ import annotations

import errno
import socket

import asyncpg
import pytest

from server.commands.common import EXIT_UNAVAILABLE, EXIT_USAGE, exit_code_for, user_error_in
from server.db.cluster import DatabaseUnavailableError, describe_server, unavailable
from server.db.registry import UnknownProjectError
from server.search.request import SearchError


def test_user_errors_are_found_inside_exception_groups_and_causes() -> None:
    clear = DatabaseUnavailableError("cannot connect")
    grouped = BaseExceptionGroup("lifespan", [ValueError("noise"), ExceptionGroup("inner", [clear])])
    assert user_error_in(grouped) is clear
    try:
        try:
            raise UnknownProjectError("unknown project 'x'")
        except UnknownProjectError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        found = user_error_in(outer)
    assert isinstance(found, UnknownProjectError)
    assert user_error_in(RuntimeError("a bug")) is None  # bugs keep their traceback
    assert user_error_in(KeyError("x")) is None


def test_exit_codes_tell_environment_from_input() -> None:
    assert exit_code_for(DatabaseUnavailableError("down")) == EXIT_UNAVAILABLE == 1
    assert exit_code_for(SearchError("bad limit")) == EXIT_USAGE == 2


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://alice:pw@db.example:6543/postgres", "db.example:6543/postgres"),
        ("postgresql://alice@db.example/postgres", "db.example/postgres"),
        ("postgresql://postgres@/postgres?host=%2Ftmp%2Fpg&port=5432", "/tmp/pg:5432/postgres"),
        ("postgres://u@[::1]:5433/x", "::1:5433/x"),
    ],
)
def test_the_server_is_named_without_user_or_password(dsn: str, shown: str) -> None:
    assert describe_server(dsn) == shown


def test_the_reason_is_the_plain_os_message() -> None:
    dsn = "postgresql://alice:pw@127.0.0.1:1/postgres"
    refused = unavailable(
        dsn, ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 1)"), source="DATABASE_URL"
    )
    assert str(refused).startswith(
        "cannot connect to PostgreSQL at 127.0.0.1:1/postgres (DATABASE_URL): Connection refused."
    )
    assert "pw" not in str(refused) and "alice" not in str(refused)
    lookup = unavailable(dsn, socket.gaierror(-2, "Name or service not known"), source="DATABASE_URL")
    assert ": Name or service not known." in str(lookup)
    assert ": timed out." in str(unavailable(dsn, TimeoutError(), source="DATABASE_URL"))
    assert "unset DATABASE_URL to use the embedded PostgreSQL" in str(refused)


def test_the_advice_fits_the_failure() -> None:
    dsn = "postgresql://alice@db:5432/postgres"
    role = unavailable(dsn, asyncpg.InvalidAuthorizationSpecificationError('role "alice" does not exist'), source="X")
    assert str(role).endswith(': role "alice" does not exist. Check the user and password in the URL')
    missing = unavailable(dsn, asyncpg.InvalidCatalogNameError('database "postgres" does not exist'), source="X")
    assert "Check the database name in the URL" in str(missing)
