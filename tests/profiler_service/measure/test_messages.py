"""The child's messages are typed both ways: what goes in comes out equal, and an untyped list is refused."""

import pytest
from pydantic import ValidationError

from profiler_service.clock.burst import BurstStats
from profiler_service.measure.messages import (
    CHILD_MESSAGE,
    BurstMeasured,
    BurstTask,
    ChildJob,
    Failed,
    Finished,
    Measured,
    NetworkBatchTask,
    NetworkTask,
    OpTask,
)
from profiler_service.measure.protocol import Protocol
from shared.schemas import OpStats

STATS = OpStats(median_ms=1.5, mean_ms=1.6, std_ms=0.1, p10_ms=1.4, p90_ms=1.8, count=40, ref_ms=2.0)


def test_a_job_comes_through_json_with_every_task_and_its_protocol():
    job = ChildJob(tasks=[BurstTask(), OpTask(key="Conv-input:32x32x3-output:16x16x16"),
                          NetworkTask(label="network", keys=["a", "b"]),
                          NetworkBatchTask(nets={"j1": ["a"], "j2": ["b", "c"]})],
                   backend="onnxruntime", threads=2, batch=1, protocol=Protocol(budget_s=0.5, quiet_ref_ms=2.0),
                   cache_dir="/tmp/cache", reference="proxyless-mobile@224/warm3")
    back = ChildJob.model_validate_json(job.model_dump_json())
    assert back == job and isinstance(back.protocol, Protocol) and back.protocol.quiet_ref_ms == 2.0
    assert [type(t) for t in back.tasks] == [BurstTask, OpTask, NetworkTask, NetworkBatchTask]


@pytest.mark.parametrize("message", [
    Measured(label="key", stats=STATS),
    BurstMeasured(stats=BurstStats(**STATS.model_dump(), others_cores=0.1, blocks_ms=[1.5, 1.6])),
    Failed(label="j2", error="SpecError: type: unknown op type 'conv'"),
    Failed(error="ValueError: unknown drift reference"),
    Finished(),
])
def test_each_message_of_the_child_comes_through_a_line_of_json(message):
    line = message.model_dump_json()
    assert "\n" not in line and CHILD_MESSAGE.validate_json(line) == message


def test_a_list_or_an_unknown_kind_is_refused():
    with pytest.raises(ValidationError):
        CHILD_MESSAGE.validate_json('["result", "key", {"median_ms": 1.0}]')
    with pytest.raises(ValidationError):
        CHILD_MESSAGE.validate_json('{"kind": "nets", "label": null}')
