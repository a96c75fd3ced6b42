"""The nominal burst reads the reference the way a measurement does (interleaved), over its quieter blocks."""

import pytest

from profiler_service.clock.burst import BLOCK_RUNS, BLOCKS, WARMUP_RUNS, burst, quiet_ms
from profiler_service.measure.protocol import Protocol


def test_quiet_ms_is_the_lower_quartile_of_the_block_medians():
    slow, quiet = [2.0] * BLOCK_RUNS, [1.0] * (BLOCK_RUNS - 1) + [9.0]
    assert quiet_ms(slow + quiet + slow) == 1.0  # one quiet block in three
    # one lucky block among many does not set the speed: the blocks' lower quartile does
    lucky, typical = [0.8] * BLOCK_RUNS, [1.0] * BLOCK_RUNS
    assert quiet_ms(lucky + typical * 7) == 1.0
    assert quiet_ms([3.0, 1.0, 2.0]) == 2.0  # under one block: the plain median


def test_the_burst_lasts_nominal_s_in_whole_blocks_and_reads_through_a_busy_stretch():
    """On a fake clock the reference takes 4 ms, and 6 ms while another tenant is busy (the first 60%)."""
    state = {"t": 0.0}

    def ref():
        state["t"] += (6.0 if state["t"] < 0.6 * 8.0 else 4.0) / 1e3

    stats = burst(ref, lambda: state["t"], Protocol(nominal_s=8.0))
    assert stats.count % BLOCK_RUNS == 0  # whole blocks
    assert state["t"] >= 8.0 and stats.median_ms == pytest.approx(4.0) and stats.p90_ms == pytest.approx(6.0)


def _clock():
    """A fake clock and two workloads that advance it: the reference (4 ms) and the filler (0.5 ms)."""
    state = {"t": 0.0, "log": []}

    def work(name: str, ms: float):
        def run():
            state["t"] += ms / 1e3
            state["log"].append(name)
        return run

    return state, (lambda: state["t"]), work("r", 4.0), work("f", 0.5)


@pytest.mark.parametrize("warm_runs", [3, 1, 0])
def test_each_timed_reference_run_follows_filler_work_as_inside_a_measurement(warm_runs):
    state, timer, ref, fill = _clock()
    stats = burst(ref, timer, Protocol(ref_warm_runs=warm_runs, nominal_s=0), filler=fill)
    assert stats.count == BLOCKS * BLOCK_RUNS and stats.median_ms == pytest.approx(4.0)
    body = "".join(state["log"])[WARMUP_RUNS:]
    groups = body.split("f")  # what runs between filler runs: "", or the reference run(s)
    refs = [g for g in groups if g]
    assert all(g == "r" * (1 + warm_runs) for g in refs)  # the untimed reference runs, then the timed one
    # after the first, each timed run follows filler worth the reference's runs (untimed + timed)
    fills = [len(run) for run in body.split("r") if run][1:]
    assert min(fills) == 8 * (1 + warm_runs)


def test_without_filler_the_burst_is_back_to_back():
    state, timer, ref, _ = _clock()
    stats = burst(ref, timer, Protocol(nominal_s=0))
    assert stats.count == BLOCKS * BLOCK_RUNS and set(state["log"]) == {"r"}


def _burst(*blocks: float, others: float | None = None):
    from profiler_service.clock.burst import BurstStats

    return BurstStats(median_ms=min(blocks), mean_ms=1, std_ms=0, p10_ms=1, p90_ms=1, count=1, blocks_ms=list(blocks),
                      others_cores=others)


def test_recent_bursts_pool_their_blocks_so_a_swing_of_one_burst_does_not_move_the_estimate():
    from profiler_service.clock.burst import RecentBursts

    recent = RecentBursts(window_s=900)
    assert recent.add(0, _burst(*[5.0] * 12)) == 5.0
    assert recent.add(300, _burst(*[6.5] * 12)) == 5.0  # slow bursts: the earlier quiet blocks still count
    assert recent.add(600, _burst(*[6.5] * 12)) == 5.0
    assert recent.add(1000, _burst(*[6.5] * 12)) == 6.5  # slow for the whole window: the device is slower
    assert recent.add(2000, _burst(*[5.2] * 12)) == 5.2  # the old bursts have left the window


def test_the_burst_hands_on_its_block_medians():
    state = {"t": 0.0}

    def ref():
        state["t"] += 0.004

    stats = burst(ref, lambda: state["t"], Protocol(nominal_s=1.0))
    assert len(stats.blocks_ms) == stats.count // BLOCK_RUNS
    assert stats.blocks_ms == pytest.approx([4.0] * len(stats.blocks_ms))


def test_recent_bursts_read_the_median_where_the_device_was_alone_and_the_lower_quartile_where_shared():
    from profiler_service.clock.burst import RecentBursts

    wander = [3.0, 3.1, 3.2, 3.3, 3.4, 3.5, 3.6, 3.7]  # the host's own spread: the device's speed is its middle
    alone = RecentBursts(window_s=900)
    assert alone.add(0, _burst(*wander, others=0.01)) == 3.3
    shared = RecentBursts(window_s=900)
    assert shared.add(0, _burst(*wander, others=1.0)) == 3.1  # the slow blocks may be another process's
    assert shared.add(300, _burst(*[3.4] * 8, others=0.0)) == 3.4  # once a burst had it alone, only those count
    assert RecentBursts(window_s=900).add(0, _burst(*wander)) == 3.1  # unknown sharing: as if shared


def test_a_burst_reads_the_median_of_its_blocks_when_nothing_else_ran(monkeypatch):
    from profiler_service.clock.tenants import OthersWatch

    state = {"t": 0.0, "n": 0}

    def ref():  # the host wanders: stretches of two blocks at 3, 4, then 5 ms, over and over
        state["n"] += 1
        state["t"] += (0.003, 0.004, 0.005)[(state["n"] // (2 * BLOCK_RUNS)) % 3]

    monkeypatch.setattr(OthersWatch, "cores", lambda self: 0.0)
    alone = burst(ref, lambda: state["t"], Protocol(nominal_s=1.0))
    monkeypatch.setattr(OthersWatch, "cores", lambda self: 1.5)
    shared = burst(ref, lambda: state["t"], Protocol(nominal_s=1.0))
    assert alone.median_ms == pytest.approx(4.0)  # the device's speed, its wander included
    assert shared.median_ms == pytest.approx(3.0)  # the quiet stretches: the slow ones may be another process's
