"""``--max-ms`` as milliseconds or a percentile of the device's measured random nets: parsed strictly (a bad
value is one line, exit 2), refused without a calibration, resolved before the search; the search then ends
with one summary block that gives the verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from search_client.cli.main import main
from search_client.latency.budget import Percentile, parse_budget, resolve_percentile

SMALL = ["--resolution", "32", "--dataset", "digits", "--batch-size", "32", "--warmup-epochs", "0", "--epochs", "1",
         "--steps-per-epoch", "2", "--arch-every", "1", "--no-progress", "--threads", "1", "--no-onnx"]
NETWORK_MS = [31.0, 44.0, 38.0, 52.0, 47.0]  # as a yaml export carries them beside the calibration


@pytest.mark.parametrize("text, want", [("p50", Percentile(50)), ("P25", Percentile(25)), ("p1", Percentile(1)),
                                        ("p99", Percentile(99)), ("0.4", 0.4), (" 12 ", 12.0), (3, 3.0)])
def test_budgets_parse(text, want):
    assert parse_budget(text) == want


@pytest.mark.parametrize("text", ["p0", "p100", "p-5", "p50.5", "pp50", "50p", "fast", "0", "-1", "inf", "nan", ""])
def test_bad_budgets_are_refused(text):
    with pytest.raises(ValueError, match="--max-ms"):
        parse_budget(text)


def test_a_percentile_is_read_between_the_nearest_ranks():
    assert resolve_percentile(Percentile(50), NETWORK_MS).ms == 44.0
    assert resolve_percentile(Percentile(25), NETWORK_MS).ms == pytest.approx(np.percentile(NETWORK_MS, 25))
    assert Percentile(50).what() == "median" and Percentile(25).what() == "25th percentile"
    assert [Percentile(q).what() for q in (1, 2, 3, 11, 12, 13, 22)] == [
        "1st percentile", "2nd percentile", "3rd percentile", "11th percentile", "12th percentile",
        "13th percentile", "22nd percentile"]


def _calibrated_file(tmp_path: Path, entries: dict[str, float], **calibration) -> Path:
    path = tmp_path / "calibrated.json"
    path.write_text(json.dumps({"id": "t", "entries": {k: {"median_ms": v} for k, v in entries.items()},
                                "calibration": {"intercept_ms": 1.0, "scale": 0.5, "version": 4, **calibration}}))
    return path


@pytest.mark.parametrize("budget", ["p0", "p100", "fifty", "-3"])
def test_a_bad_budget_is_one_line_and_exit_2(budget, tmp_path, table_file, capsys):
    code = main(["search", "--table-file", str(table_file), "--max-ms", budget, "--out", str(tmp_path / "o"),
                 *SMALL])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: --max-ms") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists()  # refused before anything ran


@pytest.mark.parametrize("calibration", [None, {"network_ms": NETWORK_MS, "scope": {"space": "proxyless-cifar"}},
                                         {}])
def test_a_relative_budget_needs_a_calibrated_table(calibration, tmp_path, entries, table_file, capsys):
    path = table_file if calibration is None else _calibrated_file(tmp_path, entries, **calibration)
    code = main(["search", "--table-file", str(path), "--max-ms", "p50", "--out", str(tmp_path / "o"), *SMALL])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: --max-ms p50") and len(err.splitlines()) == 1, err
    assert ("needs a calibrated table" in err) if calibration != {} else ("carries none" in err)
    assert not (tmp_path / "o" / "log.jsonl").exists()


def test_p50_resolves_before_the_search_and_the_summary_gives_the_verdict(tmp_path, entries, capsys):
    path = _calibrated_file(tmp_path, entries, network_ms=NETWORK_MS, loo_rmspe=0.05)
    assert main(["search", "--table-file", str(path), "--max-ms", "p50", "--out", str(tmp_path / "o"), *SMALL]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "budget p50 = 44.000 ms (median of the 5 random nets the device measured)"
    assert lines.index("summary") > lines.index("search configuration:")  # resolved first, summarised last
    assert out.count("summary\n") == 1 and "predicted latency" not in out
    derived = json.loads((tmp_path / "o" / "derived" / "derive.json").read_text())
    assert derived["max_ms"] == 44.0 and derived["calibrated"] and derived["calibration_version"] == 4
    block = "\n".join(lines[lines.index("summary"):])
    assert f"predicted  {derived['predicted_ms']:.3f} ms, calibrated (calibration v4, leave-one-out error 5.0%)" \
        in block and "raw table sum" not in block
    gap = 100 * (44.0 - derived["predicted_ms"]) / 44.0
    assert f"budget     44.000 ms (p50): within, predicted {derived['predicted_ms']:.3f} ms is {gap:.1f}% under it" \
        in block
    run = tmp_path / "o"
    assert f"pictures   {run / 'curves.png'} {run / 'arch_probs.png'} {run / 'arch.png'}" in block

    # derive re-resolves a percentile from the calibration the search used
    ckpt = run / "ckpt.pt"
    assert main(["derive", str(ckpt), "--max-ms", "p75", "--no-onnx", "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    p75 = float(np.percentile(NETWORK_MS, 75))
    assert out.startswith(f"budget p75 = {p75:.3f} ms (75th percentile of the 5 random nets the device measured)")
    assert json.loads((tmp_path / "d" / "derive.json").read_text())["max_ms"] == p75
    assert f"budget     {p75:.3f} ms (p75): within" in out and out.count("summary\n") == 1
