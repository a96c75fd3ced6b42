"""Results scaled to the device's nominal speed by the drift reference timed with them."""

import pytest

from profiler_service.db.engine import Database
from profiler_service.services import drift as D
from shared.schemas import OpStats


def _stats(median: float, ref: float | None) -> OpStats:
    return OpStats(median_ms=median, mean_ms=median, std_ms=0.1 * median, p10_ms=0.9 * median,
                   p90_ms=1.1 * median, count=30, ref_ms=ref)


def test_the_first_observation_fixes_the_nominal_per_backend_and_threads(db: Database, device_id: int):
    with db.session() as s:
        assert D.nominal_ms(s, device_id, "onnxruntime", 1, 2.0) == 2.0
        assert D.nominal_ms(s, device_id, "onnxruntime", 1, 3.0) == 2.0  # fixed from then on
        assert D.nominal_ms(s, device_id, "onnxruntime", 4, 0.7) == 0.7  # another configuration
        assert D.nominal_ms(s, device_id, "torch", 1, 5.0) == 5.0
    with db.session() as s:  # stored, not per session
        assert D.nominal_ms(s, device_id, "onnxruntime", 1, 9.0) == 2.0


def test_a_result_timed_while_the_machine_ran_slow_is_scaled_back(db: Database, device_id: int):
    with db.session() as s:
        first = D.normalise(s, _stats(10.0, 2.0), device_id=device_id, backend="onnxruntime", threads=1)
        slow = D.normalise(s, _stats(13.0, 2.6), device_id=device_id, backend="onnxruntime", threads=1)
    assert first.median_ms == pytest.approx(10.0)
    # the reference ran 30% slower too: the same op at the nominal speed
    for f in D.SCALED:
        assert getattr(slow, f) == pytest.approx(getattr(first, f))
    assert slow.ref_ms == 2.6 and slow.count == 30  # the raw reference is kept: the raw figure is recoverable


def test_without_a_reference_nothing_changes(db: Database, device_id: int):
    st = _stats(10.0, None)
    with db.session() as s:
        assert D.normalise(s, st, device_id=device_id, backend="onnxruntime", threads=1) == st


def test_a_different_reference_workload_gets_its_own_nominal(db: Database, device_id: int):
    with db.session() as s:
        assert D.nominal_ms(s, device_id, "onnxruntime", 1, 2.0) == 2.0
        assert D.nominal_ms(s, device_id, "onnxruntime", 1, 7.0, reference="another@224") == 7.0
