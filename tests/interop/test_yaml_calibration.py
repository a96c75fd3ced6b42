"""The calibration comment of a yaml table file: read back whole, invisible to a yaml reader (the published
ones included), and a broken line is named rather than ignored."""

from __future__ import annotations

import pytest
import yaml

from shared.table_yaml import calibration_line, read_calibration_line

CALIBRATION = {"intercept_ms": 0.05, "scale": 1.2, "group_scales": {"mbconv:k3e6": 1.1}, "version": 3,
               "networks": ["n1", "n2", "n3"], "network_ms": [0.31, 0.42, 0.5], "loo_rmspe": None}
BODY = "Conv-input:32x32x3-output:16x16x32: {count: 5, mean: 0.1, var: 0.0001}\n"


def test_the_line_reads_back_and_a_yaml_reader_sees_only_the_ops():
    text = "# latency table t1: device=d\n" + calibration_line(CALIBRATION) + BODY
    assert read_calibration_line(text) == CALIBRATION
    assert list(yaml.safe_load(text)) == ["Conv-input:32x32x3-output:16x16x32"]


def test_no_line_or_one_below_the_ops_is_no_calibration():
    assert read_calibration_line("# latency table t1\n" + BODY) is None
    assert read_calibration_line(BODY + calibration_line(CALIBRATION)) is None  # not at the head


@pytest.mark.parametrize("line, needle", [("# calibration: {oops\n", "not one JSON object"),
                                          ("# calibration: [1, 2]\n", "list, not a JSON object")])
def test_a_broken_line_is_named(line, needle):
    with pytest.raises(ValueError, match=needle):
        read_calibration_line(line + BODY, "t.yaml")
