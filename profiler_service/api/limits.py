"""The request guard: what every request must pass before routing, before a body byte is read.

A pure ASGI middleware, so nothing here waits for a thread or parses anything:

- no API key configured: only loopback clients are served. ``uvicorn --factory ... --host 0.0.0.0`` builds
  the app without telling it the host, so the bind check alone cannot see such a server; the peer
  address of each connection can.
- writes need the key (when one is configured) before their body is read: a 96 MB body without a key
  is refused on its headers.
- every body has a size cap, checked on Content-Length or, for a chunked body, while it streams in.
- NUL bytes in the path or query are refused (PostgreSQL cannot store them; ids never hold them).
- at most ``max_concurrent`` requests work at once; the others wait in the event loop. Each of those
  holds at most one database connection and one thread, so none waits on the pool while the
  connections it needs sit with requests that wait for a thread (the 30 s stall under load).
- HEAD is served as GET without the body.
"""

from __future__ import annotations

import asyncio
import hmac
import json
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


async def _reply(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    def __init__(self, app: ASGIApp, *, api_key: str | None, caps: BodyCaps, max_concurrent: int):
        self.app = app
        self.api_key = api_key
        self.caps = caps
        self.max_concurrent = max_concurrent
        self._slots: asyncio.Semaphore | None = None

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
        elif method in WRITE_METHODS:
            # A chunked body: read here, up to the cap, and replayed to the app (a limit raised from inside
            # the app's receive would surface as a 400 parse error).
            body = await self._read_capped(receive, cap)
            if body is None:
                await _reply(send, 413, f"body: over the {cap}-byte limit of {path}")
                return
            receive = _replay(body, receive)
        if method == "HEAD":
            scope, send = {**scope, "method": "GET"}, _drop_body(send)
        if path in _UNCOUNTED:
            await self.app(scope, receive, send)
            return
        if self._slots is None:  # made here: it belongs to the server's event loop
            self._slots = asyncio.Semaphore(self.max_concurrent)
        async with self._slots:
            await self.app(scope, receive, send)

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

    @staticmethod
    async def _read_capped(receive: Receive, cap: int) -> bytes | None:
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > cap:
                return None
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
