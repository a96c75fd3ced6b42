"""Other processes' share of the machine: what tells a shared burst from a slower device."""

import subprocess
import sys
import time

import pytest

from profiler_service.clock import tenants
from profiler_service.clock.tenants import OthersWatch

linux = pytest.mark.skipif(not tenants.PROC_STAT.exists(), reason="needs /proc/stat (Linux)")


@linux
def test_a_busy_process_beside_us_shows_as_others_and_our_own_work_does_not():
    watch = OthersWatch()
    end = time.monotonic() + 1.0
    while time.monotonic() < end:  # our own busy second
        pass
    own = watch.cores()
    loop = "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass"
    busy = subprocess.Popen([sys.executable, "-c", loop])
    time.sleep(0.3)  # its interpreter started: the watch covers its busy loop
    watch = OthersWatch()
    time.sleep(1.0)
    others = watch.cores()
    busy.wait(10)
    assert others is not None and own is not None
    assert others > 0.5  # a whole core's loop, give or take the machine's other load
    assert others > own


def test_a_machine_that_does_not_say_gives_none(tmp_path, monkeypatch):
    monkeypatch.setattr(tenants, "PROC_STAT", tmp_path / "absent")
    assert OthersWatch().cores() is None


@linux
def test_the_burst_reports_the_others_share():
    from profiler_service.clock.burst import burst
    from profiler_service.measure.protocol import Protocol

    state = {"t": 0.0}

    def ref():
        state["t"] += 0.004

    stats = burst(ref, lambda: state["t"], Protocol(nominal_s=0.5))
    assert isinstance(stats.others_cores, float) and stats.others_cores >= 0
    assert "others_cores" in stats.model_dump()  # it reaches the worker through the child's stream
