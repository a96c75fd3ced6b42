"""The pictures of a run folder: written by the search itself, each from the files it draws, none faked
when its inputs are missing, and the block drawing encodes kernel and expansion as it says."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg

from search_client.cli.main import main
from search_client.report.plots import KERNEL_COLORS, _block_style, write_report

SMALL = ["--resolution", "32", "--dataset", "digits", "--batch-size", "32", "--warmup-epochs", "1", "--epochs", "2",
         "--steps-per-epoch", "4", "--arch-every", "1", "--no-progress", "--threads", "1", "--no-onnx"]


def _png(path: Path):
    img = mpimg.imread(path)  # (H, W, 4), floats
    assert img.shape[0] > 200 and img.shape[1] > 400, img.shape
    assert img[..., :3].std() > 0.05  # something is drawn, not a blank canvas
    return img


def test_search_writes_its_pictures_and_a_measurement_adds_the_last(tmp_path: Path, table_file: Path):
    out = tmp_path / "run"
    assert main(["search", "--table-file", str(table_file), "--target-ms", "30", "--max-ms", "60",
                 "--out", str(out), *SMALL]) == 0
    assert {p.name for p in out.glob("*.png")} == {"curves.png", "arch_probs.png", "arch.png"}  # not measured
    for name in ("curves", "arch_probs", "arch"):
        _png(out / f"{name}.png")
    derived = json.loads((out / "derived" / "derive.json").read_text())
    network = {"id": "n1", "status": "done", "predicted_ms": derived["predicted_ms"], "calibrated_ms": None,
               "measured": {"median_ms": 1.1 * derived["predicted_ms"], "p10_ms": derived["predicted_ms"],
                            "p90_ms": 1.3 * derived["predicted_ms"], "count": 40}}
    paths = write_report(out, network=network)
    assert set(paths) == {"curves_png", "arch_probs_png", "arch_png", "latency_png"}
    _png(paths["latency_png"])
    assert json.loads((out / "measurement.json").read_text()) == network
    assert "latency_png" in write_report(out)  # redrawn later from the saved measurement alone


def test_missing_inputs_skip_their_picture(tmp_path: Path):
    assert write_report(tmp_path) == {}
    line = {"epoch": 0, "phase": "warmup", "train_acc": 0.5, "valid_acc": 0.4, "probs": [[0.5, 0.5]]}
    (tmp_path / "log.jsonl").write_text(json.dumps(line) + "\n")
    assert set(write_report(tmp_path)) == {"curves_png"}  # no derived arch: no probabilities, no blocks


def test_blocks_encode_kernel_by_colour_and_expansion_by_height():
    (c3, h3, l3), (c7, h7, l7), (c7b, h7b, _) = (_block_style(n) for n in ("3x3_MBConv3", "7x7_MBConv3",
                                                                           "7x7_MBConv6"))
    assert (c3, c7) == (KERNEL_COLORS[3], KERNEL_COLORS[7]) and c7b == c7
    assert h3 == h7 < h7b  # expansion 6 is drawn taller than 3, whatever the kernel
    assert (l3, l7) == ("3x3\nE3", "7x7\nE3")
