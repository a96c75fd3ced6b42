"""An outage is reported once, however many requests and job steps meet it, and its end once."""

from __future__ import annotations

import logging
import threading

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError

from profiler_service.db.outage import Outage, is_outage, wait_until_up


class DriverError(Exception):
    def __init__(self, message: str, sqlstate: str | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate


def wrapped(message: str, sqlstate: str | None = None) -> DBAPIError:
    return OperationalError("SELECT 1", {}, DriverError(message, sqlstate))


@pytest.mark.parametrize(("error", "outage"), [
    (wrapped('connection failed: connection to server at "127.0.0.1", port 5433 failed: Connection refused'), True),
    (wrapped("the database system is shutting down", "57P03"), True),
    (wrapped("terminating connection due to administrator command", "57P01"), True),
    (wrapped("some driver text", "08006"), True),
    (wrapped("division by zero", "22012"), False),
    (wrapped("database is locked"), False),  # SQLite busy: the database answers, another writer holds it
    (ValueError("connection refused"), False),  # not from a database
])
def test_what_counts_as_an_outage(error: Exception, outage: bool):
    assert is_outage(error) is outage


def test_an_outage_is_logged_once_and_its_end_once(caplog):
    outage = Outage()
    with caplog.at_level(logging.WARNING, logger="profiler_service.db.outage"):
        for _ in range(50):
            outage.noticed(wrapped("Connection refused"))
        assert outage.active
        outage.over()
        outage.over()
        outage.noticed(wrapped("the database system is starting up", "57P03"))
    assert [r.getMessage().split(":")[0].split(" after")[0] for r in caplog.records] == [
        "database unavailable", "database answers again", "database unavailable"]


def test_waiting_for_the_database_ends_when_it_answers_or_the_worker_stops():
    tries = []

    def ping() -> None:
        tries.append(1)
        if len(tries) < 3:
            raise wrapped("Connection refused")
    outage = Outage()
    assert wait_until_up(ping, outage, threading.Event(), first_wait_s=0.01) is True
    assert len(tries) == 3 and not outage.active

    stopped = threading.Event()
    stopped.set()
    assert wait_until_up(ping, outage, stopped) is False

    def refused_statement() -> None:
        raise wrapped("permission denied", "42501")
    with pytest.raises(DBAPIError):
        wait_until_up(refused_statement, outage, threading.Event())
