"""The published OpenAPI against the live server: schemathesis generates requests from /openapi.json and
checks that none gets a 5xx and that every response matches the schema it was documented with.

Bounded: a few examples per operation, a server with no worker (generated jobs only queue, nothing
benchmarks), loopback only.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings

schemathesis = pytest.importorskip("schemathesis")
from profiler_helpers import PUBLISHED  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

CHECKS = [not_a_server_error, response_schema_conformance]
EXAMPLES = 20


@pytest.fixture(scope="module")
def contract_server(server_factory):
    srv = server_factory("contract", env={"PROFILER_WORKER": "0"})
    import httpx
    # A real table for the generated requests to hit besides the random ids.
    r = httpx.post(f"{srv.url}/v1/tables/import", params={"device": "contract", "backend": "tflite"},
                   content=PUBLISHED, timeout=30)
    assert r.status_code == 201, r.text
    return srv


@pytest.fixture(scope="module")
def api_schema(contract_server):
    return schemathesis.openapi.from_url(f"{contract_server.url}/openapi.json")


def test_api_honours_its_openapi(api_schema):
    """Every operation, a bounded number of generated cases each; all failures are reported together."""
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def check(case) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            check()
        except Exception as e:  # noqa: BLE001 - collected, so one run reports every operation at fault
            failures.append(f"{operation.label}: {str(e)[:1500]}")
    assert not failures, "\n\n".join(failures)
