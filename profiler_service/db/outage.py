"""A database that does not answer: told apart from a statement it refused, reported once per outage, and
waited out.

A lost or refused connection (the server stopped, restarting, unreachable) says nothing about the request or
the job that met it: the API answers 503 and the worker puts the job back once the database answers again,
where a refused statement is a verdict on what was asked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

# PostgreSQL's SQLSTATEs for a connection that failed or a server going away: class 08 (connection exception),
# admin_shutdown, crash_shutdown, cannot_connect_now (starting up, in recovery).
_OUTAGE_SQLSTATES = ("08", "57P01", "57P02", "57P03")
# What the drivers say where no SQLSTATE came (the connection never opened, or broke mid-statement).
_OUTAGE_WORDS = ("connection refused", "could not connect", "connection failed", "server closed the connection",
                 "terminating connection", "the database system is", "connection is closed", "connection timed out",
                 "connection reset", "no connection to the server", "consuming input failed", "broken pipe",
                 "the connection is lost", "ssl connection has been closed")
RETRY_AFTER_S = 5


def is_outage(exc: BaseException) -> bool:
    """The database could not be reached, or the connection broke: nothing about the statement itself."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DBAPIError):
            if seen.connection_invalidated:
                return True
            sqlstate = getattr(seen.orig, "sqlstate", None) or ""
            if sqlstate.startswith(_OUTAGE_SQLSTATES):
                return True
            text = str(seen.orig).lower()
            if any(word in text for word in _OUTAGE_WORDS):
                return True
        seen = seen.__cause__
    return False


def first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return (lines[0] if lines else type(orig).__name__)[:300]


class Outage:
    """Whether the database is out, as this process last saw it: the first failure of an outage is logged,
    the rest are not, and the first connection after it logs how long it lasted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None

    @property
    def active(self) -> bool:
        return self._since is not None

    def noticed(self, exc: BaseException) -> None:
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        log.warning("database unavailable: %s; retrying until it answers", first_line(exc))

    def over(self) -> None:
        with self._lock:
            if self._since is None:
                return
            lasted, self._since = time.monotonic() - self._since, None
        log.warning("database answers again after %.0f s", lasted)


def wait_until_up(ping: Callable[[], None], outage: Outage, stop: threading.Event, *,
                  first_wait_s: float = 0.5, max_wait_s: float = 5.0) -> bool:
    """Ping until the database answers (True) or ``stop`` is set (False), backing off between tries."""
    wait = first_wait_s
    while not stop.is_set():
        try:
            ping()
        except DBAPIError as e:
            if not is_outage(e):
                raise
            outage.noticed(e)
            stop.wait(wait)
            wait = min(2 * wait, max_wait_s)
            continue
        outage.over()
        return True
    return False
