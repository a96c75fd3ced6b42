"""Prometheus metrics on a per-app registry (several apps in one process, e.g. tests, must not clash)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from profiler_service.db.engine import Database
from profiler_service.db.models import JOB_STATUSES, Job, Measurement


class _DatabaseCollector(Collector):
    """Job counts and table sizes read at scrape time: correct even when another process runs the jobs."""

    def __init__(self, db: Database):
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("profiler_jobs", "Jobs by kind and status", labels=["kind", "status"])
        entries = GaugeMetricFamily("profiler_table_entries", "Measured ops stored, all tables")
        with self.db.session(write=False) as s:
            counts = {(k, st): n for k, st, n in s.execute(
                select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status))}
            n_entries = s.scalar(select(func.count()).select_from(Measurement)) or 0
        for kind in ("profile", "network"):
            for status in JOB_STATUSES:
                jobs.add_metric([kind, status], counts.get((kind, status), 0))
        entries.add_metric([], n_entries)
        yield jobs
        yield entries


class Metrics:
    def __init__(self, db: Database):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("profiler_http_requests", "HTTP requests by method, route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("profiler_http_request_seconds", "HTTP request handling time",
                                 ["method", "route"], registry=self.registry)
        self.ops_measured = Counter("profiler_ops_measured", "Ops measured by this process's worker",
                                    registry=self.registry)
        self.registry.register(_DatabaseCollector(db))

    def op_measured_callback(self) -> Callable[[], None]:
        return self.ops_measured.inc
