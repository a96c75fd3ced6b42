"""The request guard: what every request must pass before routing.

A pure ASGI middleware, so nothing here waits for a thread or parses anything:

- no API key configured: only loopback clients are served. ``uvicorn --factory ... --host 0.0.0.0`` builds
  the app without telling it the host, so the bind check alone cannot see such a server; the peer
  address of each connection can.
- writes need the key (when one is configured) before their body is read: a 96 MB body without a key
  is refused on its headers.
- every body has a size cap, checked on Content-Length or, for a chunked body, while it streams in.
- every body has a deadline (``BodyDeadline``): one that stalls or trickles is cut with 408. The body is
  read whole *before* the request takes a slot, so a connection waiting for its body holds nothing that
  serves others (16 stalled bodies used to take all 16 slots and every read timed out behind them).
- NUL bytes in the path or query are refused (PostgreSQL cannot store them; ids never hold them).
- requests work in lanes (``Lanes``): at most ``reads`` reads (GET, HEAD, lookups) at once, and apart
  from them at most ``writes`` writes, of which at most ``imports`` imports; the others wait in the event
  loop. Reads never queue behind an import storm. Each working request holds at most one database
  connection and one thread, so none waits on the pool while the connections it needs sit with requests
  that wait for a thread (the 30 s stall under load).
- HEAD is served as GET without the body.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import ip_address

Scope = dict
Message = dict
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Posts that only read (no key by design).
_READ_POSTS = ("/lookup",)
_UNCOUNTED = frozenset({"/healthz"})


@dataclass(frozen=True)
class BodyCaps:
    """Body size caps in bytes: imports carry whole tables, everything else is a small JSON document."""

    default: int = 1 * 2**20
    lookup: int = 4 * 2**20  # 10,000 keys of about 90 characters
    table_import: int = 32 * 2**20

    def for_path(self, path: str) -> int:
        if path.endswith("/import"):
            return self.table_import
        if path.endswith("/lookup"):
            return self.lookup
        return self.default


@dataclass(frozen=True)
class BodyDeadline:
    """A body must arrive whole within ``base_s`` plus its size at ``min_rate`` bytes per second: a few
    seconds for a JSON document, about half a minute for a 32 MB import."""

    base_s: float = 5.0
    min_rate: float = 1 * 2**20

    def for_size(self, size: int) -> float:
        return self.base_s + size / self.min_rate


@dataclass(frozen=True)
class Lanes:
    """Requests working at once, per kind. Imports are writes that parse a whole table (the yaml of a
    480 KB import is tens of MB of Python objects while it lives), so fewer of them run together."""

    reads: int = 16
    writes: int = 4
    imports: int = 2

    @property
    def total(self) -> int:
        return self.reads + self.writes


class _BodyTooLarge(Exception):
    pass


class _BodyTimeout(Exception):
    pass


class _ClientGone(Exception):
    pass


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        addr = ip_address(host.split("%", 1)[0])
    except ValueError:
        return host == "localhost"
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


def _needs_key(method: str, path: str) -> bool:
    return method in WRITE_METHODS and not path.endswith(_READ_POSTS)


def lane_of(method: str, path: str) -> str:
    """'reads' | 'writes' | 'imports'."""
    if not _needs_key(method, path):
        return "reads"
    return "imports" if path.endswith("/import") else "writes"


async def _reply(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    def __init__(self, app: ASGIApp, *, api_key: str | None, caps: BodyCaps, lanes: Lanes = Lanes(),
                 deadline: BodyDeadline = BodyDeadline()):
        self.app = app
        self.api_key = api_key
        self.caps = caps
        self.lanes = lanes
        self.deadline = deadline
        self._slots: dict[str, asyncio.Semaphore] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        refusal = self._refusal(scope, method, path)
        if refusal is not None:
            await _reply(send, *refusal)
            return
        headers = dict(scope.get("headers") or [])
        cap = self.caps.for_path(path)
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _reply(send, 400, "Content-Length: not a number")
                return
            if int(declared) > cap:
                await _reply(send, 413, f"body: {int(declared)} bytes over the {cap}-byte limit of {path}")
                return
        has_body = int(declared) > 0 if declared is not None else (
            method in WRITE_METHODS or b"transfer-encoding" in headers)
        if has_body:
            # Read here, whole, before a slot is taken, and replayed to the app (a limit raised from inside
            # the app's receive would surface as a 400 parse error).
            seconds = self.deadline.for_size(int(declared) if declared is not None else cap)
            try:
                body = await _read_body(receive, cap, seconds)
            except _BodyTooLarge:
                await _reply(send, 413, f"body: over the {cap}-byte limit of {path}")
                return
            except _BodyTimeout:
                await _reply(send, 408, f"body: not complete within {seconds:.0f} s; send it whole and promptly")
                return
            except _ClientGone:
                return
            receive = _replay(body, receive)
        if method == "HEAD":
            scope, send = {**scope, "method": "GET"}, _drop_body(send)
        if path in _UNCOUNTED:
            await self.app(scope, receive, send)
            return
        lane = lane_of(method, path)
        slots = self._lane_slots()
        if lane == "imports":  # an import waits for its own lane first: queued imports hold no write slot
            async with slots["imports"], slots["writes"]:
                await self.app(scope, receive, send)
            return
        async with slots[lane]:
            await self.app(scope, receive, send)

    def _lane_slots(self) -> dict[str, asyncio.Semaphore]:
        if self._slots is None:  # made here: they belong to the server's event loop
            self._slots = {"reads": asyncio.Semaphore(self.lanes.reads),
                           "writes": asyncio.Semaphore(self.lanes.writes),
                           "imports": asyncio.Semaphore(self.lanes.imports)}
        return self._slots

    def _refusal(self, scope: Scope, method: str, path: str) -> tuple[int, str, list] | None:
        if "\x00" in path or b"\x00" in scope.get("query_string", b"") or b"%00" in scope.get("query_string", b""):
            return 422, "path or query: NUL bytes are not allowed", []
        if self.api_key is None:
            client = scope.get("client")
            # No peer address: a unix socket (local by definition) or an in-process call.
            if client is not None and not is_loopback(client[0]):
                return 403, ("this server has no API key, so it serves loopback clients only: set "
                             "PROFILER_API_KEY to serve the network"), []
            return None
        if _needs_key(method, path):
            given = dict(scope.get("headers") or []).get(b"x-api-key")
            if given is None or not hmac.compare_digest(given, self.api_key.encode()):
                return 401, "X-API-Key: missing or wrong API key", [(b"www-authenticate", b"ApiKey")]
        return None


async def _read_body(receive: Receive, cap: int, seconds: float) -> bytes:
    """The whole body, within ``seconds`` and ``cap`` bytes."""
    chunks, seen = [], 0
    end = time.monotonic() + seconds
    while True:
        try:
            message = await asyncio.wait_for(receive(), max(end - time.monotonic(), 0.0))
        except TimeoutError:
            raise _BodyTimeout from None
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > cap:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def wrapped() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the disconnect, when it comes
    return wrapped


def _drop_body(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)
    return wrapped
