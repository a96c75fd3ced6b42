import numpy as np
import pytest

from profiler_service.measure.protocol import Protocol, median_ci_halfwidth, summarize, time_callable


def test_summarize_fields():
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s.median_ms == 3.0 and s.count == 5
    assert s.p10_ms < s.median_ms < s.p90_ms and s.mean_ms == pytest.approx(22.0)


def test_ci_shrinks_with_samples():
    rng = np.random.default_rng(0)
    small = np.sort(rng.normal(10, 1, 30))
    large = np.sort(rng.normal(10, 1, 3000))
    assert median_ci_halfwidth(large) < median_ci_halfwidth(small)
    assert median_ci_halfwidth(np.array([1.0, 2.0])) == float("inf")


def _fake_clock(durations):
    """A timer whose every fn() call advances by the next duration: the protocol sees exact samples."""
    state = {"t": 0.0, "i": 0}

    def fn():
        state["t"] += durations[state["i"] % len(durations)]
        state["i"] += 1

    return fn, (lambda: state["t"])


def test_stops_when_median_is_precise():
    fn, timer = _fake_clock([0.001] * 10 + [0.00101] * 10)
    stats = time_callable(fn, Protocol(warmup_runs=2, warmup_s=0, min_runs=20, budget_s=60), timer)
    assert stats.count < 100  # converged long before the cap
    assert stats.median_ms == pytest.approx(1.0, rel=0.02)


def test_noisy_op_runs_until_budget_or_cap():
    rng = np.random.default_rng(1)
    fn, timer = _fake_clock(list(rng.uniform(0.0005, 0.0015, 997)))
    stats = time_callable(fn, Protocol(warmup_runs=1, warmup_s=0, min_runs=20, max_runs=400, rel_ci=1e-4,
                                       budget_s=60), timer)
    assert stats.count == 400


def test_before_hook_runs_untimed():
    calls = []
    fn, timer = _fake_clock([0.001])
    stats = time_callable(fn, Protocol(warmup_runs=1, warmup_s=0, min_runs=10, max_runs=10), timer,
                          before=lambda: calls.append(1))
    assert len(calls) == stats.count == 10


def test_the_garbage_collector_is_off_while_timing_and_restored_after():
    import gc

    seen = []
    fn, timer = _fake_clock([0.001])
    protocol = Protocol(warmup_runs=1, warmup_s=0, min_runs=10, max_runs=10)
    time_callable(lambda: (seen.append(gc.isenabled()), fn()), protocol, timer,
                  reference=lambda: seen.append(gc.isenabled()))
    assert seen and not any(seen) and gc.isenabled()
    with pytest.raises(RuntimeError):  # restored on error too
        time_callable(lambda: (_ for _ in ()).throw(RuntimeError("op failed")), protocol, timer)
    assert gc.isenabled()


def test_disturbed_measurement_is_repeated_and_steadiest_kept():
    from profiler_service.measure.protocol import settled, spread

    results = iter([summarize([1.0, 1.0, 2.0, 3.0]), summarize([1.0, 1.02, 1.01, 1.0]), summarize([9.0, 1.0])])
    calls = []

    def measure():
        calls.append(1)
        return next(results)

    stats = settled(measure, Protocol(max_spread=0.3, retries=2, retry_wait_s=0))
    assert len(calls) == 2 and spread(stats) <= 0.3

    always_noisy = settled(lambda: summarize([1.0, 2.0, 3.0]), Protocol(retries=1, retry_wait_s=0))
    assert spread(always_noisy) > 0.3  # the steadiest of the tries, flagged by its own p10/p90


def _shared_clock(fn_s: float, ref_s: float):
    """fn and the reference advance one fake clock by fixed durations."""
    state = {"t": 0.0, "ref": 0}

    def fn():
        state["t"] += fn_s

    def ref():
        state["t"] += ref_s
        state["ref"] += 1

    return fn, ref, (lambda: state["t"]), state


def test_reference_is_timed_alongside_and_its_median_reported():
    fn, ref, timer, state = _shared_clock(0.001, 0.004)
    stats = time_callable(fn, Protocol(warmup_runs=2, warmup_s=0, min_runs=20, min_ref_runs=15, budget_s=60),
                          timer, reference=ref)
    assert stats.median_ms == pytest.approx(1.0) and stats.ref_ms == pytest.approx(4.0)
    timed_refs = (state["ref"] - 2) // 2  # two ran in the warm-up; each timing is a pair
    assert timed_refs >= 15  # convergence waited for enough reference samples
    # about as much time on the reference (two runs a timing) as on the op: a pair per eight 1 ms samples
    assert stats.count / timed_refs == pytest.approx(8, abs=1)


def test_warm_interleave_rewarms_both_and_logs_which_calls_were_timed():
    order: list[str] = []
    state = {"t": 0.0}

    def fn():
        state["t"] += 0.001
        order.append("f")

    def ref():
        state["t"] += 0.004
        order.append("r")

    calls: list[bool] = []
    stats = time_callable(fn, Protocol(warmup_runs=2, warmup_s=0, min_runs=20, min_ref_runs=3, budget_s=60),
                          lambda: state["t"], reference=ref, calls=calls)
    assert len(calls) == order.count("f") and sum(calls) == stats.count
    body = "".join(order)[len("frfr"):]  # after the warm-up (one op and one reference run each)
    # a reference timing is always a pair ...
    assert "rr" in body and "rrr" not in body and body.count("rr") * 2 == body.count("r")
    # ... and each untimed op call after the warm-up re-warms the op right after a pair (or ends the warm-up)
    f_at = [i for i, c in enumerate(body) if c == "f"]
    untimed = [i for i, t in zip(f_at, calls[2:], strict=True) if not t]
    assert untimed[0] == 0 and len(untimed) == body.count("rr") + 1
    assert all(body[i - 2:i] == "rr" for i in untimed[1:])
    # the old protocol (one timed reference run, no re-warm) is still there to compare against
    order.clear()
    time_callable(fn, Protocol(warmup_runs=2, warmup_s=0, min_runs=20, min_ref_runs=3, budget_s=60,
                               warm_interleave=False), lambda: state["t"], reference=ref)
    assert "rr" not in "".join(order)


def test_no_reference_no_ref_ms():
    fn, timer = _fake_clock([0.001])
    assert time_callable(fn, Protocol(warmup_runs=1, warmup_s=0, min_runs=10), timer).ref_ms is None
