"""Reading one answer of the profiler service within bounds: its size, the time it takes, where it points.

A service that misbehaves (or something that only pretends to be one) must not be able to hold a search
without end or fill its memory: a response that declared ``Content-Length: 2000000000`` grew the client
to 7.7 GB, an endless chunked stream to 13 GB, and one byte per second kept it waiting for ever (a
timeout per read, not per answer). So every answer is streamed and counted against ``max_bytes`` as it
unpacks (gzip is unpacked here, a piece at a time, so a gzip bomb stops at the cap too); every request
has one deadline for the whole answer; a redirect is never followed, since a table must come from the
service that was named. Every failure here is one line that says what happened.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from search_client.latency.values import excerpt

MB = 2**20
DEFAULT_MAX_BYTES = 32 * MB  # a table of 10,000 entries is about 3 MB as JSON
DEFAULT_DEADLINE_S = 60.0


class ProfilerError(RuntimeError):
    """The service refused a request (4xx, or 5xx after retries), or answered what no service should;
    ``detail`` is the server's message where it sent one."""

    def __init__(self, message: str, *, status_code: int | None = None, detail: Any = None):
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


class ProfilerUnavailable(ProfilerError):
    """The service could not be reached, answered 5xx on every try, or gave no complete answer in time."""


@dataclass(frozen=True)
class Answer:
    """A whole answer, read within bounds."""

    method: str
    path: str
    status_code: int
    headers: httpx.Headers
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        try:
            return json.loads(self.content)
        except ValueError:
            kind = self.headers.get("content-type") or "no content type"
            raise ProfilerError(f"{self.method} {self.path}: the profiler answered {self.status_code} with a body "
                                f"that is not JSON ({kind}): {excerpt(self.text[:200])}",
                                status_code=self.status_code) from None


def parse(model: type[BaseModel], data: Any, what: str) -> Any:
    """``model.model_validate(data)``, or one line naming the first field at fault (not a pydantic dump)."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        first = errors[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "the body"
        more = f" ({len(errors) - 1} more fields are wrong too)" if len(errors) > 1 else ""
        raise ProfilerError(f"{what}: {where}: {first.get('msg', 'invalid')}, got {excerpt(first.get('input'))}"
                            f"{more}") from None


def _redirect(method: str, path: str, base_url: str, resp: httpx.Response) -> ProfilerError:
    code = resp.status_code
    location = resp.headers.get("location", "")
    target = urlsplit(urljoin(base_url + path, location))
    here = urlsplit(base_url)
    if (target.scheme, target.netloc) != (here.scheme, here.netloc):
        return ProfilerError(f"{method} {path}: the profiler answered {code} to another host "
                             f"({target.netloc or location or 'no location'}); redirects are not followed",
                             status_code=code)
    return ProfilerError(f"{method} {path}: the profiler answered {code} (to {excerpt(location)}); redirects are "
                         "not followed: check the service URL", status_code=code)


def fetch(http: httpx.Client, method: str, path: str, *, base_url: str, deadline: float, deadline_s: float,
          max_bytes: int, read_timeout: float, **kw: Any) -> Answer:
    """One request, its answer read whole by ``deadline`` (a ``time.monotonic()`` instant) and within
    ``max_bytes``. A 3xx other than 304 raises; transport errors (a stall past the read timeout) propagate."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise too_late(method, path, deadline_s)
    with http.stream(method, path, timeout=httpx.Timeout(min(read_timeout, remaining)), **kw) as resp:
        if 300 <= resp.status_code < 400 and resp.status_code != 304:
            raise _redirect(method, path, base_url, resp)
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise too_large(method, path, max_bytes, f" (it declared {int(declared)} bytes)")
        encoding = resp.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise ProfilerError(f"{method} {path}: the profiler answered in an encoding it was not asked for "
                                f"({excerpt(encoding)})", status_code=resp.status_code)
        unpack = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
        chunks, size = [], 0
        for raw in resp.iter_raw():
            pending = raw
            while pending:  # at most what the cap still allows out of each piece: a bomb never unpacks whole
                if unpack is None:
                    piece, pending = pending, b""
                else:
                    piece = unpack.decompress(pending, max_bytes - size + 1)
                    pending = unpack.unconsumed_tail
                size += len(piece)
                if size > max_bytes:
                    raise too_large(method, path, max_bytes, "")
                chunks.append(piece)
            if time.monotonic() > deadline:
                raise too_late(method, path, deadline_s)
        if unpack is not None and not unpack.eof and size:
            raise ProfilerError(f"{method} {path}: the profiler's gzip answer is cut short",
                                status_code=resp.status_code)
        return Answer(method, path, resp.status_code, resp.headers, b"".join(chunks))


def too_large(method: str, path: str, max_bytes: int, why: str) -> ProfilerError:
    return ProfilerError(f"{method} {path}: the answer exceeded {max_bytes / MB:g} MB{why}; a latency table is a "
                         "few MB at most")


def too_late(method: str, path: str, deadline_s: float) -> ProfilerUnavailable:
    return ProfilerUnavailable(f"{method} {path}: no complete answer within {deadline_s:g} s")


__all__ = ["DEFAULT_DEADLINE_S", "DEFAULT_MAX_BYTES", "Answer", "ProfilerError", "ProfilerUnavailable", "fetch",
           "parse"]
