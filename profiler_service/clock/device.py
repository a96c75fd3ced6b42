"""The clock as a worker uses it: the quiet speed a benchmark child reads its slow-downs against, the burst
when one is due (pooled with the recent ones into the nominal, and kept in the history), and a result scaled
to the nominal as it is stored."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from profiler_service.clock import drift, history
from profiler_service.db.engine import Database
from profiler_service.settings import Settings
from shared.schemas import OpStats

if TYPE_CHECKING:  # numpy: loaded when a burst is taken
    from profiler_service.clock.burst import BurstStats, RecentBursts
    from profiler_service.measure.protocol import Protocol

log = logging.getLogger(__name__)

Config = tuple[str, int, str]  # (backend, threads, reference)


class DeviceClock:
    """One per worker, across its jobs: when it last took a burst of each configuration, and the bursts it
    pools. A configuration is (backend, threads, drift reference) on this device."""

    def __init__(self, db: Database, settings: Settings, device_id: int):
        self.db = db
        self.settings = settings
        self.device_id = device_id
        self._burst_at: dict[Config, float] = {}  # when this worker last timed the reference alone
        self._bursts: dict[Config, RecentBursts] = {}

    def protocol(self, backend: str, threads: int, reference: str) -> Protocol:
        """The settings' protocol, with the configuration's quiet reference speed (its nominal, where one is
        known) for the child to tell a measurement the device's other tenants slowed down."""
        with self.db.session(write=False) as s:
            row = drift.current(s, self.device_id, backend, threads, reference)
            quiet = row.nominal_ms if row is not None and row.source == drift.BURST else None
        return dataclasses.replace(self.settings.protocol, quiet_ref_ms=quiet)

    def burst_hook(self, backend: str, threads: int, reference: str) -> Callable[[BurstStats], None] | None:
        """Before this worker's first job on a configuration and reference (and the first after each
        ``nominal_refresh_s``), the child times the reference alone and the quiet-speed estimate goes to the
        store (clock/drift.py), ahead of any result. None when no burst is due."""
        cfg = (backend, threads, reference)
        last = self._burst_at.get(cfg)
        if last is not None and time.monotonic() - last < self.settings.nominal_refresh_s:
            return None

        from profiler_service.clock.burst import RecentBursts

        def on_burst(stats: BurstStats) -> None:
            # the bursts of the last three refresh periods, pooled: a swing of seconds does not move it
            recent = self._bursts.setdefault(cfg, RecentBursts(3 * self.settings.nominal_refresh_s))
            estimate = recent.add(time.monotonic(), stats)
            with self.db.session() as s:
                row = drift.record_quiet(s, self.device_id, backend, threads, estimate, reference=reference,
                                         others_cores=stats.others_cores)
                history.log_burst(s, row, burst_ms=stats.median_ms, pooled_ms=estimate,
                                others_cores=stats.others_cores)
                log.info("nominal %s/%d threads/%s: burst %.3f ms, recent bursts %.3f ms (others busy on %s cores)"
                         " -> nominal %.3f ms (v%d)", *cfg, stats.median_ms, estimate, stats.others_cores,
                         row.nominal_ms, row.version)
            self._burst_at[cfg] = time.monotonic()
        return on_burst

    def to_nominal(self, session: Session, stats: OpStats, backend: str, threads: int, reference: str) -> OpStats:
        """A result scaled to the configuration's nominal (the first result's reference fixes one where no
        burst has yet)."""
        return drift.normalise(session, stats, device_id=self.device_id, backend=backend, threads=threads,
                               reference=reference)
