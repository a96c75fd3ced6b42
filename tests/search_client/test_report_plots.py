"""The pictures of a run folder: written by the search itself, each from the files it draws, none faked
when its inputs are missing, and the block drawing encodes kernel and expansion as it says."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg

from search_client.cli.main import main
from search_client.report.plots import CHOICE_BOXES, KERNEL_COLORS, _block_style, arch_probs_figure, write_report
from shared.spaces import get_space

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


def test_every_arch_probs_panel_labels_its_own_candidates_and_the_fill_is_marked():
    import matplotlib.pyplot as plt

    space = get_space("proxyless-mobile", 32, 0.35, 10)
    layers = [layer.candidates for layer in space.layers]
    assert {len(c) for c in layers} == {6, 7}  # the lists differ from layer to layer
    probs = [[1.0 / len(c)] * len(c) for c in layers]
    probs[1] = [0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.7]  # layer 1's argmax is its last candidate, "zero"
    log = [{"epoch": 0, "phase": "search", "probs": probs}]
    argmax = [c[0] for c in layers]
    argmax[1] = "zero"
    final = list(argmax)
    final[1] = "7x7_MBConv6"  # the fill upgraded layer 1
    final[2] = "3x3_MBConv6"  # the projection moved layer 2
    fig = arch_probs_figure(log, layers, final=final, argmax=argmax, filled={1})
    try:
        panels = fig.axes[:len(layers)]
        for ax, candidates in zip(panels, layers, strict=True):
            labels = [t.get_text() for t in ax.get_yticklabels()]
            assert labels == [c.replace("_MBConv", " E") for c in candidates]
        assert [t.get_text() for t in panels[1].get_yticklabels()][-1] == "zero"
        boxes = {i: [p.get_edgecolor() for p in ax.patches] for i, ax in enumerate(panels[:4])}
        from matplotlib.colors import to_rgba

        assert to_rgba(CHOICE_BOXES["filled"][0]) in boxes[1] and to_rgba(CHOICE_BOXES["swapped"][0]) in boxes[2]
        assert boxes[0] == [to_rgba(CHOICE_BOXES["argmax"][0])] and boxes[3] == boxes[0]
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert legend == [CHOICE_BOXES[k][1] for k in ("argmax", "filled", "swapped")] + ["the argmax it replaced"]
        assert "changed by the fill" in legend[1]
    finally:
        plt.close(fig)
