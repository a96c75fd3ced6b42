"""The device's clock, audited: each nominal burst kept with the nominal it left (clock/history.py)."""

import pytest

from profiler_service.clock import drift, history
from profiler_service.db.engine import Database


def _burst(s, device_id: int, estimate: float, others: float | None = 0.0, reference: str = drift.REFERENCE):
    row = drift.record_quiet(s, device_id, "onnxruntime", 1, estimate, reference=reference, others_cores=others)
    return history.log_burst(s, row, burst_ms=estimate, pooled_ms=estimate, others_cores=others)


def test_each_burst_is_kept_with_the_nominal_and_version_it_left(db: Database, device_id: int):
    with db.session() as s:
        _burst(s, device_id, 2.0)
        _burst(s, device_id, 2.02)  # within the tolerance: the nominal stays
        _burst(s, device_id, 2.5, others=0.9)  # shared: the device was busy, not slower
        _burst(s, device_id, 1.8)  # quieter: a new version
    with db.session() as s:
        [clock] = history.clocks(s, device_id)
    assert (clock.reference, clock.nominal_ms, clock.version, clock.source) == (drift.REFERENCE, 1.8, 2, drift.BURST)
    newest_first = [(b.burst_ms, b.nominal_ms, b.version, b.shared) for b in clock.bursts]
    assert newest_first == [(1.8, 1.8, 2, False), (2.5, 2.0, 1, True), (2.02, 2.0, 1, False), (2.0, 2.0, 1, False)]
    # the shared burst says nothing of the device's own speed: the spread is over the other three
    assert clock.spread_bursts == 3 and clock.spread_pct == pytest.approx(100 * (2.02 - 1.8) / 2.0)


def test_each_reference_has_its_own_clock_and_the_history_is_bounded(db: Database, device_id: int,
                                                                      monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(history, "KEEP", 3)
    with db.session() as s:
        for ms in (2.0, 2.1, 2.2, 2.3, 2.4):
            _burst(s, device_id, ms)
        _burst(s, device_id, 0.3, reference="proxyless-cifar@32/3x3_SepConv/warm3")
    with db.session() as s:
        clocks = {c.reference: c for c in history.clocks(s, device_id, bursts=10)}
        assert [b.burst_ms for b in clocks[drift.REFERENCE].bursts] == [2.4, 2.3, 2.2]  # the oldest went
        assert [b.burst_ms for b in clocks["proxyless-cifar@32/3x3_SepConv/warm3"].bursts] == [0.3]
        assert clocks["proxyless-cifar@32/3x3_SepConv/warm3"].spread_pct is None  # one burst: no spread
        assert [c.bursts for c in history.clocks(s, device_id, bursts=0)] == [[], []]


def test_spread_is_max_minus_min_over_the_median():
    assert history.spread_pct([2.0]) is None
    assert history.spread_pct([2.0, 2.2, 2.1]) == pytest.approx(100 * 0.2 / 2.1)
