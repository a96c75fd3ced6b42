"""REST client of the profiler service (DESIGN.md "REST API"), with an ETag-keyed local table cache.

The search must be able to run where the device is unreachable (a laptop on a train, a cluster with no
route to the board), so every table fetched is written to disk and reused: with ``If-None-Match`` while
the service answers, as an offline fallback (with a warning) when it does not.

Retries: bounded, exponential backoff, on connection errors and 5xx only. A 4xx is the caller's
mistake and is raised at once as ``ProfilerError`` carrying the server's ``detail``. Writes that
create work (jobs, networks, imports) are retried only when the request cannot have reached the
server (connect errors, 502/503/504), so a retry never queues a benchmark twice.

Bounds (``answers.py``): every answer is read within ``max_bytes`` and one ``deadline_s`` for the whole
request, retries included; redirects are refused. Every latency accepted, from the service or the cache,
is a finite number of ms above zero (``latency/values.py``); a table with one that is not is refused
whole and never cached.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import RootModel

from search_client.latency.values import BadLatencyError, check_latency, excerpt
from search_client.remote.answers import (
    DEFAULT_DEADLINE_S,
    DEFAULT_MAX_BYTES,
    Answer,
    ProfilerError,
    ProfilerUnavailable,
    fetch,
    parse,
    too_late,
)
from shared.files import WriteFailed, write_text_atomic
from shared.schemas import (
    ArchIn,
    ClockOut,
    ImportResponse,
    JobCreate,
    LookupResponse,
    NetworkOut,
    OpStats,
    TableOut,
    TableSummary,
)

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = "~/.cache/proxyless-search"
DEADLINE_ENV = "SEARCH_CLIENT_DEADLINE_S"  # a whole request's deadline, for every command
MAX_BACKOFF_S = 30.0
_NOT_PROCESSED = (502, 503, 504)  # a proxy or an overloaded server answered; the request did no work
_TERMINAL = ("done", "failed", "cancelled")


class JobFailed(ProfilerError):
    """A profiling job or network measurement ended failed or cancelled."""


class JobTimeout(ProfilerError, TimeoutError):
    """A job did not finish within the caller's timeout (it keeps running on the device)."""


def _detail(resp: Answer) -> Any:
    try:
        body = json.loads(resp.content)
    except ValueError:
        return excerpt(resp.text.strip()) if resp.content.strip() else f"HTTP {resp.status_code}"
    return body.get("detail", body) if isinstance(body, dict) else body


def _detail_text(detail: Any) -> str:
    # FastAPI's 422 detail is a list of {loc, msg}; flatten it to one readable line
    if isinstance(detail, list):
        parts = []
        for d in detail:
            if isinstance(d, dict) and "msg" in d:
                loc = ".".join(str(x) for x in d.get("loc", ()) if x != "body")
                parts.append(f"{loc}: {d['msg']}" if loc else str(d["msg"]))
            else:
                parts.append(str(d))
        return "; ".join(parts)
    return str(detail)


class _TableList(RootModel[list[TableSummary]]):
    pass


class _ClockList(RootModel[list[ClockOut]]):
    pass


def check_stats(key: str, stats: OpStats, where: str) -> None:
    """The figures a search predicts with are latencies; the spreads and references at least finite and >= 0."""
    for field in ("median_ms", "mean_ms"):
        check_latency(key, getattr(stats, field), where, field=field)
    for field in ("std_ms", "p10_ms", "p90_ms", "ref_ms", "nominal_ms"):
        if (value := getattr(stats, field)) is not None:
            check_latency(key, value, where, field=field, zero_ok=True)


def checked_table(body: Any, where: str) -> TableOut:
    """A table body, parsed and every entry checked; one line naming the first bad entry otherwise."""
    table = parse(TableOut, body, where)
    for key, stats in table.entries.items():
        try:
            check_stats(key, stats, where)
        except BadLatencyError as e:
            raise ProfilerError(f"{e}; the table was not used or cached") from None
    return table


def _deadline_from_env() -> float:
    text = os.environ.get(DEADLINE_ENV, "").strip()
    if not text:
        return DEFAULT_DEADLINE_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not (seconds > 0 and seconds != float("inf")):
        raise ValueError(f"{DEADLINE_ENV}={text!r}: expected the seconds a request may take, a number above 0")
    return seconds


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


class ProfilerClient:
    """Talks to one profiler service. Not thread-safe (one httpx.Client); make one per thread."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 30, retries: int = 3,
                 backoff: float = 0.5, cache_dir: str | os.PathLike | None = None,
                 deadline_s: float | None = None, max_bytes: int = DEFAULT_MAX_BYTES):
        """``timeout``: the longest wait for any one read; ``deadline_s``: for a whole request, retries
        included (default: $SEARCH_CLIENT_DEADLINE_S, else 60 s); ``max_bytes``: the largest answer read
        (decoded)."""
        deadline_s = deadline_s if deadline_s is not None else _deadline_from_env()
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if not (deadline_s > 0 and max_bytes > 0):
            raise ValueError(f"deadline_s and max_bytes must be > 0, got {deadline_s} and {max_bytes}")
        self.base_url = base_url.rstrip("/")
        self.retries, self.backoff = retries, backoff
        self.timeout, self.deadline_s, self.max_bytes = timeout, deadline_s, max_bytes
        # gzip only: answers.fetch unpacks it itself, within the size cap
        headers = {"Accept": "application/json", "Accept-Encoding": "gzip", "User-Agent": "proxyless-search-client"}
        if api_key:
            headers["X-API-Key"] = api_key  # what the service's write endpoints check
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers, follow_redirects=False,
                                  transport=httpx.HTTPTransport(retries=0))  # retries are ours
        root = Path(cache_dir or DEFAULT_CACHE_DIR).expanduser()
        # tables of two services may share an id; keep their caches apart
        self.cache_dir = root / "tables" / _safe_name(self.base_url.split("://", 1)[-1])
        self.last_attempts = 0  # tries made by the last request (1 = no retry)
        self.last_status_code: int | None = None  # 200, 304, ... of the last get_table; None when offline
        self.last_from_cache = False  # get_table answered from disk (304 or offline)
        self.last_offline = False  # get_table answered from disk because the service was unreachable
        self.last_etag: str | None = None

    # ---- plumbing -------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ProfilerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, *, idempotent: bool = True, **kw: Any) -> Answer:
        """One request with bounded retries, all within ``deadline_s``; returns 2xx/304, raises ProfilerError
        otherwise."""
        last_exc: Exception | None = None
        deadline = time.monotonic() + self.deadline_s
        for attempt in range(self.retries + 1):
            self.last_attempts = attempt + 1
            if attempt:
                pause = min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF_S)
                if time.monotonic() + pause >= deadline:
                    raise too_late(method, path, self.deadline_s) from last_exc
                time.sleep(pause)
            try:
                resp = fetch(self._http, method, path, base_url=self.base_url, deadline=deadline,
                             deadline_s=self.deadline_s, max_bytes=self.max_bytes, read_timeout=self.timeout, **kw)
            except httpx.TransportError as e:
                if time.monotonic() >= deadline:
                    raise too_late(method, path, self.deadline_s) from e
                last_exc = e
                # a connect error means nothing reached the server, so even a POST is safe to repeat
                if not idempotent and not isinstance(e, httpx.ConnectError | httpx.ConnectTimeout):
                    raise ProfilerUnavailable(
                        f"{method} {path} to {self.base_url} got no answer ({type(e).__name__}: {e}); not "
                        "retried, since the server may have acted on it: check its jobs before submitting "
                        "again") from e
                log.info("profiler %s %s: %s (try %d of %d)", method, path, e, attempt + 1, self.retries + 1)
                continue
            if resp.status_code < 400:
                return resp
            detail = _detail(resp)
            message = f"{method} {path} -> {resp.status_code}: {_one_line(_detail_text(detail))}"
            if resp.status_code < 500:
                raise ProfilerError(message, status_code=resp.status_code, detail=detail)
            if not idempotent and resp.status_code not in _NOT_PROCESSED:
                raise ProfilerError(message, status_code=resp.status_code, detail=detail)
            # still failing after every retry counts as unavailable, so get_table falls back to its cache
            last_exc = ProfilerUnavailable(message, status_code=resp.status_code, detail=detail)
            log.info("profiler %s (try %d of %d)", message, attempt + 1, self.retries + 1)
        if isinstance(last_exc, ProfilerError):
            raise last_exc
        raise ProfilerUnavailable(f"profiler at {self.base_url} unreachable after {self.last_attempts} "
                                  f"tries: {method} {path}: {type(last_exc).__name__}: {last_exc}") from last_exc

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self._request(method, path, **kw).json()

    # ---- service ----------------------------------------------------------------------------------

    def health(self) -> dict:
        return self._json("GET", "/healthz")

    def device(self) -> dict:
        return self._json("GET", "/v1/device")

    def spaces(self) -> list[dict]:
        return self._json("GET", "/v1/spaces")

    def clocks(self, bursts: int = 20) -> list[ClockOut]:
        """The device's nominals (the clocks its figures are on) with their latest ``bursts`` bursts and how far
        the last hour's lay apart: the device's own floor under two latencies read minutes apart."""
        body = self._json("GET", "/v1/device/clocks", params={"bursts": bursts})
        return parse(_ClockList, body, "GET /v1/device/clocks").root

    # ---- tables -----------------------------------------------------------------------------------

    def list_tables(self) -> list[TableSummary]:
        return parse(_TableList, self._json("GET", "/v1/tables"), "GET /v1/tables").root

    def _cache_path(self, table_id: str) -> Path:
        return self.cache_dir / f"{_safe_name(table_id)}.json"

    def cached_table(self, table_id: str) -> tuple[TableOut, str | None] | None:
        """(table, etag) from the local cache, or None when absent or unreadable."""
        path = self._cache_path(table_id)
        try:
            blob = json.loads(path.read_text())
            table = checked_table(blob["table"], f"cached table {path}")
            return table, blob.get("etag")
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, ProfilerError) as e:
            log.warning("ignoring unreadable cached table %s: %s", path, e)
            return None

    def _store(self, table_id: str, body: dict, etag: str | None) -> None:
        path = self._cache_path(table_id)
        blob = json.dumps({"etag": etag, "fetched_at": time.time(), "table": body})
        try:  # atomic: a concurrent reader (another DDP rank) never sees half a file
            write_text_atomic(path, blob)
        except WriteFailed as e:  # the table in hand is good; only working offline later is lost
            log.warning("table %s not cached: %s", table_id, e)

    def get_table(self, table_id: str) -> TableOut:
        """The whole table; revalidated by ETag against the cache; the cache when the service is down."""
        cached = self.cached_table(table_id)
        headers = {"If-None-Match": cached[1]} if cached and cached[1] else {}
        self.last_from_cache = self.last_offline = False
        try:
            resp = self._request("GET", f"/v1/tables/{table_id}", headers=headers)
        except ProfilerUnavailable:
            if cached is None:
                raise
            table, etag = cached
            log.warning("profiler unreachable, using cached table %s (etag %s)", table_id, etag)
            self.last_status_code, self.last_from_cache, self.last_offline = None, True, True
            self.last_etag = etag
            return table
        self.last_status_code = resp.status_code
        if resp.status_code == 304 and cached is not None:
            self.last_from_cache, self.last_etag = True, cached[1]
            return cached[0]
        if resp.status_code == 304:  # we sent no validator, so the server is wrong; ask again plainly
            resp = self._request("GET", f"/v1/tables/{table_id}")
            self.last_status_code = resp.status_code
        body = resp.json()
        table = checked_table(body, f"table {table_id} from {self.base_url}")  # refused: nothing cached
        self.last_etag = resp.headers.get("ETag") or table.etag
        self._store(table_id, body, self.last_etag)
        return table

    def get_table_yaml(self, table_id: str) -> str:
        """The table in the published ProxylessNAS yaml format (``KEY: {count, mean, var}``)."""
        return self._request("GET", f"/v1/tables/{table_id}", params={"format": "yaml"}).text

    def get_calibration(self, table_id: str) -> dict | None:
        """The table's calibration from measured networks (``shared.calibration.Calibration.from_dict``)."""
        return self.get_table(table_id).calibration

    def lookup(self, table_id: str, keys: list[str]) -> LookupResponse:
        keys = [getattr(k, "key", k) for k in keys]  # OpSpec or key string
        body = self._json("POST", f"/v1/tables/{table_id}/lookup", json={"keys": keys})  # read-only
        what = f"lookup in table {table_id} from {self.base_url}"
        found = parse(LookupResponse, body, what)
        for key, stats in found.found.items():
            check_stats(key, stats, what)
        return found

    def import_table(self, content: str | bytes | dict, *, device: str, backend: str, threads: int = 1,
                     batch: int = 1) -> ImportResponse:
        """Import the published yaml (text) or our JSON (a dict or its text)."""
        if isinstance(content, dict):
            data, ctype = json.dumps(content).encode(), "application/json"
        else:
            data = content.encode() if isinstance(content, str) else content
            ctype = "application/json" if data.lstrip()[:1] in (b"{", b"[") else "application/x-yaml"
        params = {"device": device, "backend": backend, "threads": threads, "batch": batch}
        resp = self._request("POST", "/v1/tables/import", idempotent=False, params=params, content=data,
                             headers={"Content-Type": ctype})
        return parse(ImportResponse, resp.json(), "POST /v1/tables/import")

    # ---- profiling jobs ---------------------------------------------------------------------------

    def submit_profile(self, keys: list[str] | None = None, *, space: str | None = None,
                       resolution: int | None = None, width_mult: float | None = None,
                       num_classes: int | None = None, backend: str = "onnxruntime", threads: int = 1,
                       batch: int = 1, table_id: str | None = None) -> dict:
        """POST /v1/jobs for a space or a list of keys -> {"id", "status", "table_id", "total", ...}."""
        job = JobCreate(space=space, resolution=resolution, width_mult=width_mult, num_classes=num_classes,
                        keys=[getattr(k, "key", k) for k in keys] if keys is not None else None,
                        backend=backend, threads=threads, batch=batch, table_id=table_id)
        return self._json("POST", "/v1/jobs", idempotent=False, json=job.model_dump(exclude_none=True))

    def get_job(self, job_id: str) -> dict:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def cancel_job(self, job_id: str) -> dict:
        return self._json("DELETE", f"/v1/jobs/{job_id}")

    def _wait(self, fetch: Callable[[], dict], what: str, poll: float, timeout: float | None,
              progress: Callable[[dict], None] | None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = fetch()
            if progress is not None:
                progress(state)
            if state.get("status") in _TERMINAL:
                if state["status"] != "done":
                    raise JobFailed(f"{what} {state['status']}: {state.get('error') or 'no reason given'}",
                                    detail=state.get("error"))
                return state
            if deadline is not None and time.monotonic() >= deadline:
                raise JobTimeout(f"{what} still {state.get('status')} after {timeout:.0f} s "
                                 f"({state.get('done', '?')}/{state.get('total', '?')} done)")
            time.sleep(poll)

    def wait_job(self, job_id: str, *, poll: float = 0.5, timeout: float | None = 3600,
                 progress: Callable[[dict], None] | None = None) -> dict:
        """Poll until done; ``progress(job)`` sees every poll (done/total). Failed/cancelled -> JobFailed."""
        return self._wait(lambda: self.get_job(job_id), f"job {job_id}", poll, timeout, progress)

    # ---- whole networks ---------------------------------------------------------------------------

    def measure_network(self, table_id: str, arch: Any) -> str:
        """POST /v1/networks: measure an architecture end to end on the device; returns the job id."""
        data = arch.model_dump() if hasattr(arch, "model_dump") else dict(arch)
        wire = ArchIn.model_validate(data).model_dump()  # exactly the fields of ARCH_JSON
        body = self._json("POST", "/v1/networks", idempotent=False, json={"table_id": table_id, "arch": wire})
        return body["id"]

    def get_network(self, network_id: str) -> NetworkOut:
        return parse(NetworkOut, self._json("GET", f"/v1/networks/{network_id}"), f"network {network_id}")

    def wait_network(self, network_id: str, *, poll: float = 0.5, timeout: float | None = 3600,
                     progress: Callable[[dict], None] | None = None) -> NetworkOut:
        state = self._wait(lambda: self._json("GET", f"/v1/networks/{network_id}"),
                           f"network {network_id}", poll, timeout, progress)
        return parse(NetworkOut, state, f"network {network_id}")

    # ---- calibration ------------------------------------------------------------------------------

    def calibrate(self, table_id: str, network_ids: list[str]) -> dict:
        """Fit (on the device) the table's calibrated model from measured networks; returns it."""
        return self._json("POST", f"/v1/tables/{table_id}/calibration", idempotent=False,
                          json={"network_ids": network_ids})

    def submit_calibration(self, table_id: str, *, space: str, resolution: int | None = None,
                           width_mult: float | None = None, num_classes: int | None = None, samples: int = 20,
                           seed: int = 0) -> dict:
        """Queue a calibration job: the device draws ``samples`` random networks of the space from
        ``seed``, measures them and fits the table's calibration. Returns the job (``/v1/jobs/{id}``)."""
        body = {"samples": samples, "seed": seed, "space": space, "resolution": resolution,
                "width_mult": width_mult, "num_classes": num_classes}
        return self._json("POST", f"/v1/tables/{table_id}/calibration", idempotent=False,
                          json={k: v for k, v in body.items() if v is not None})

    def calibrate_table(self, table_id: str, *, space: str, resolution: int | None = None,
                        width_mult: float | None = None, num_classes: int | None = None, samples: int = 20,
                        seed: int = 0, wait: bool = True, timeout: float | None = 3600,
                        progress: Callable[[dict], None] | None = None) -> dict:
        """Calibrate a table in one call: with ``wait`` (default), block until the device has measured the
        networks and fitted, and return the calibration (``Calibration.from_dict``); else return the job.
        ``progress(job)`` sees every poll (``done``/``total`` networks). Failed -> JobFailed."""
        job = self.submit_calibration(table_id, space=space, resolution=resolution, width_mult=width_mult,
                                      num_classes=num_classes, samples=samples, seed=seed)
        if not wait:
            return job
        self.wait_job(job["id"], timeout=timeout, progress=progress)
        return self._json("GET", f"/v1/tables/{table_id}/calibration")

    def wait_healthy(self, timeout: float = 60) -> dict:
        """Poll /healthz until the service answers (a freshly started one takes a few seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.health()
            except ProfilerUnavailable:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.3)


__all__ = ["JobFailed", "JobTimeout", "ProfilerClient", "ProfilerError", "ProfilerUnavailable"]
