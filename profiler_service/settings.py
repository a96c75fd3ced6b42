"""Service configuration: one pydantic-settings object, read from ``PROFILER_*`` environment variables.

Built by the app factory / CLI, never at import time, so tests and several apps in one process can each
have their own.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.specs import Limits

if TYPE_CHECKING:
    from profiler_service.measure.protocol import Protocol

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class BindError(ValueError):
    """The server was asked to listen where it must not."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROFILER_", extra="ignore")

    database_url: str = "sqlite:///./var/profiler.db"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    api_key: SecretStr | None = None
    device_name: str = Field(default_factory=socket.gethostname, min_length=1, max_length=200)
    cache_dir: Path = Path("./var/onnx-cache")

    # What this device agrees to build (shared.specs.Limits).
    max_channels: int = Field(default=4096, ge=1)
    max_resolution: int = Field(default=1024, ge=8)
    max_batch: int = Field(default=256, ge=1)
    max_activation_mb: float = Field(default=512.0, gt=0)

    # Measurement protocol (profiler_service.measure.protocol.Protocol).
    rel_ci: float = Field(default=0.02, gt=0, lt=1)
    budget_s: float = Field(default=3.0, gt=0)
    warmup_runs: int = Field(default=10, ge=0)
    warmup_s: float = Field(default=0.1, ge=0)
    min_runs: int = Field(default=20, ge=5)
    max_runs: int = Field(default=5000, ge=5)
    op_context: Literal["network", "isolated"] = "network"
    max_spread: float = Field(default=0.3, gt=0)
    # A result timed while the reference ran this much over the device's quiet speed is timed again.
    max_slowdown: float = Field(default=0.10, gt=0)
    retries: int = Field(default=3, ge=0, le=10)
    # The first wait before a retry; each next one doubles (1, 2, 4 s): a busy spell outlasts one second.
    retry_wait_s: float = Field(default=1.0, ge=0, le=60)
    # Time a fixed reference network between samples and scale results to the device's nominal speed
    # (measure/reference.py): off only on a box whose clock is pinned and unshared.
    drift_reference: bool = True
    # How often a worker re-times the reference alone to re-estimate the quiet nominal (clock/burst.py),
    # at the start of its next job: the nominal follows the device (a virtual machine has slowed 7% in 10 minutes).
    nominal_refresh_s: float = Field(default=300.0, gt=0)
    # How long that burst lasts at least: longer than the host's own wander (tens of seconds on a VM).
    nominal_burst_s: float = Field(default=20.0, ge=0, le=600)

    # Worker behaviour.
    worker: bool = True
    poll_interval_s: float = Field(default=0.5, gt=0)
    # Network jobs queued back to back and measured alike are claimed together, up to this many, and timed
    # in one benchmark process with their windows in turns (measure/tasks.py networks_in_turns); 1: one each.
    network_batch: int = Field(default=32, ge=1, le=256)
    # A running job whose heartbeat is older than this is taken to have lost its worker.
    stale_job_s: float = Field(default=600.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    max_import_mb: float = Field(default=32.0, gt=0)
    # Reads (GET, HEAD, lookups) worked on at once; the others wait in the event loop.
    max_concurrent_requests: int = Field(default=16, ge=1, le=256)
    # Writes worked on at once, apart from the reads (so an import storm never starves them), and of those
    # the imports (each parses a whole table). The API's pool is sized from reads + writes.
    max_concurrent_writes: int = Field(default=4, ge=1, le=64)
    max_concurrent_imports: int = Field(default=2, ge=1, le=64)
    # A request body must arrive whole within this, plus a second per MiB: one that stalls is cut with 408.
    body_timeout_s: float = Field(default=5.0, gt=0, le=600)

    @field_validator("api_key", mode="before")
    @classmethod
    def _blank_key_is_no_key(cls, v: object) -> object:
        # PROFILER_API_KEY="" must not count as a key: it would open a public bind with an empty secret.
        if isinstance(v, str) and not v.strip():
            return None
        return v

    @property
    def limits(self) -> Limits:
        return Limits(max_channels=self.max_channels, max_resolution=self.max_resolution,
                      max_batch=self.max_batch, max_activation_mb=self.max_activation_mb)

    @property
    def protocol(self) -> Protocol:
        # Imported here: the engine pulls in numpy, and settings must stay cheap to build.
        from profiler_service.measure.protocol import Protocol

        return Protocol(rel_ci=self.rel_ci, budget_s=self.budget_s, warmup_runs=self.warmup_runs,
                        warmup_s=self.warmup_s, min_runs=self.min_runs, max_runs=self.max_runs,
                        op_context=self.op_context, max_spread=self.max_spread, max_slowdown=self.max_slowdown,
                        retries=self.retries, retry_wait_s=self.retry_wait_s,
                        drift_reference=self.drift_reference, nominal_s=self.nominal_burst_s)

    @property
    def api_key_value(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key else None

    def check_bind(self, host: str | None = None) -> None:
        """Refuse a non-loopback bind without an API key: anyone on the network could queue benchmarks."""
        host = host or self.host
        if self.api_key_value is None and host not in LOOPBACK_HOSTS:
            raise BindError(f"refusing to listen on {host!r} without an API key: set PROFILER_API_KEY "
                            "or bind to 127.0.0.1")
