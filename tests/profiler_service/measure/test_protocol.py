import numpy as np
import pytest

from profiler_service.measure.protocol import Protocol, median_ci_halfwidth, summarize, time_callable
from shared.schemas import OpStats


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
    from profiler_service.measure.protocol import Settler, spread

    results = iter([summarize([1.0, 1.0, 2.0, 3.0]), summarize([1.0, 1.02, 1.01, 1.0]), summarize([9.0, 1.0])])
    calls = []

    def measure():
        calls.append(1)
        return next(results)

    stats = Settler()(measure, Protocol(max_spread=0.3, retries=2, retry_wait_s=0))
    assert len(calls) == 2 and spread(stats) <= 0.3

    always_noisy = Settler()(lambda: summarize([1.0, 2.0, 3.0]), Protocol(retries=1, retry_wait_s=0))
    assert spread(always_noisy) > 0.3  # the steadiest of the tries, flagged by its own p10/p90


def _timed_at(ref_ms: float, median_ms: float = 1.0) -> OpStats:
    return summarize([median_ms] * 6, [ref_ms] * 3)


def test_a_measurement_timed_while_the_device_was_slowed_is_repeated_and_the_least_slowed_kept():
    from profiler_service.measure.protocol import Settler, slowdown

    protocol = Protocol(quiet_ref_ms=2.0, max_slowdown=0.1, retries=3, retry_wait_s=0)
    results = iter([_timed_at(2.6, 0.9), _timed_at(2.1, 1.0), _timed_at(3.0)])
    calls = []

    def measure():
        calls.append(1)
        return next(results)

    stats = Settler()(measure, protocol)
    assert len(calls) == 2 and slowdown(stats, protocol) == pytest.approx(1.05)
    # without a quiet speed to read against, only the spread counts: the first result stands
    assert Settler()(lambda: _timed_at(2.6), Protocol(retry_wait_s=0)).ref_ms == 2.6


def test_a_device_busy_for_a_while_stops_the_slowdown_retries_until_it_is_quiet_again():
    from profiler_service.measure.protocol import Settler

    protocol = Protocol(quiet_ref_ms=2.0, max_slowdown=0.1, retries=2, retry_wait_s=0)
    settle, calls = Settler(), []

    def busy():
        calls.append(1)
        return _timed_at(2.4 + 0.01 * len(calls))  # slowed 20% and more, whatever the wait

    for _ in range(Settler.STUCK_AFTER):
        assert settle(busy, protocol).ref_ms == pytest.approx(2.41)  # the least slowed of its tries
        calls.clear()
    settle(busy, protocol)
    assert len(calls) == 1  # stuck: measured once, not waited out
    calls.clear()
    settle(lambda: _timed_at(2.0), protocol)  # a quiet result ...
    settle(busy, protocol)
    assert len(calls) == 3  # ... and the retries are back


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
    timed_refs = (state["ref"] - 2) // 4  # two ran in the warm-up; each timing is three untimed + the timed one
    assert timed_refs >= 15  # convergence waited for enough reference samples
    # about as much time on the reference (four runs a timing) as on the op: four per sixteen 1 ms samples
    assert stats.count / timed_refs == pytest.approx(16, abs=1)


@pytest.mark.parametrize(("ref_warm", "op_rewarm"), [(3, 1), (1, 1), (3, 2), (0, 0)])
def test_interleave_rewarms_both_and_logs_which_calls_were_timed(ref_warm, op_rewarm):
    order: list[str] = []
    state = {"t": 0.0}

    def fn():
        state["t"] += 0.001
        order.append("f")

    def ref():
        state["t"] += 0.004
        order.append("r")

    calls: list[bool] = []
    stats = time_callable(fn, Protocol(warmup_runs=2, warmup_s=0, min_runs=20, min_ref_runs=3, budget_s=60,
                                       ref_warm_runs=ref_warm, op_rewarm_runs=op_rewarm),
                          lambda: state["t"], reference=ref, calls=calls)
    assert len(calls) == order.count("f") and sum(calls) == stats.count
    body = "".join(order)[len("frfr"):]  # after the warm-up (one op and one reference run each)
    blocks = [b for b in body.split("f") if b]
    assert blocks and all(b == "r" * (1 + ref_warm) for b in blocks)  # untimed reference runs, then the timed one
    # the untimed op calls after the warm-up: op_rewarm of them to end it, then op_rewarm after each block
    untimed = [c for c in calls[2:] if not c]
    assert len(untimed) == op_rewarm * (len(blocks) + 1)
    f_at = [i for i, c in enumerate(body) if c == "f"]
    timed_at = [i for i, t in zip(f_at, calls[2:], strict=True) if t]
    after_block = [i for i in timed_at if i > 0 and body[i - 1] == "r"]
    # re-warmed, no timed run follows a reference run; cold, some do
    assert (after_block == []) if op_rewarm else bool(after_block)


def _switching_host(seed: int):
    """A host whose speed switches between 1x and 1.5x at random moments (segments ~0.5 s long), and an op
    (1 ms) and a reference (4 ms) that both slow by the host's factor, each run with 2% noise: their true
    ratio is 0.25 throughout."""
    rng = np.random.default_rng(seed)
    edges = np.cumsum(rng.exponential(0.5, size=200))
    state = {"t": 0.0}

    def work(seconds: float):
        def run():
            factor = 1.5 if np.searchsorted(edges, state["t"]) % 2 else 1.0
            state["t"] += seconds * factor * rng.lognormal(0, 0.02)
        return run

    return work(0.001), work(0.004), (lambda: state["t"])


def test_reference_is_paired_with_the_samples_beside_it_when_the_host_switches_speed():
    """The op's median and the reference's median can land in different speed modes (a 40% error on these
    VMs); each sample over the reference timed beside it cannot."""
    protocol = Protocol(warmup_runs=2, warmup_s=0, min_runs=300, max_runs=300, min_ref_runs=3, budget_s=60,
                        rel_ci=0.0)
    paired_err, unpaired_err = [], []
    for seed in range(20):
        fn, ref, timer = _switching_host(seed)
        stats = time_callable(fn, protocol, timer, reference=ref)
        paired_err.append(abs(stats.median_ms / stats.ref_ms / 0.25 - 1))
        # the old reading, ratio of the two medians, from the same kind of run without pairing
        fn, ref, timer = _switching_host(seed)
        samples, ref_samples = [], []
        for _ in range(60):
            for _ in range(16):
                t0 = timer()
                fn()
                samples.append(timer() - t0)
            for _ in range(3):
                ref()
            t0 = timer()
            ref()
            ref_samples.append(timer() - t0)
        unpaired = summarize(samples, ref_samples)
        unpaired_err.append(abs(unpaired.median_ms / unpaired.ref_ms / 0.25 - 1))
    assert max(paired_err) < 0.02
    assert max(unpaired_err) > 0.1  # the scenario does separate the two readings


def test_no_reference_no_ref_ms():
    fn, timer = _fake_clock([0.001])
    assert time_callable(fn, Protocol(warmup_runs=1, warmup_s=0, min_runs=10), timer).ref_ms is None
