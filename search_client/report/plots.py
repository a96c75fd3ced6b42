"""Pictures of a search run, read from its folder: what the log says, drawn.

``write_report(run_dir)`` reads ``log.jsonl`` (one line per epoch), ``derived/arch.json`` and
``derived/derive.json`` (written by derive) and ``measurement.json`` (the device's measurement of the
derived net, when there is one), and writes PNGs beside them:

- ``curves.png``        expected latency E[LAT] and the argmax's predicted latency, accuracy, per epoch
- ``arch_probs.png``    every searchable layer's candidate probabilities over the epochs (heatmaps), the
                        derived choice boxed, and marked where the budget's projection or the fill changed it
- ``arch.png``          the derived net as blocks: colour = kernel size, height = expansion ratio
- ``latency.png``       predicted (raw table sum, calibrated) vs measured latency of the derived net

A picture whose inputs are missing is skipped, never faked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from shared.files import read_json_lines, write_text_atomic
from shared.spaces import get_space

MEASUREMENT = "measurement.json"
KERNEL_COLORS = {3: "#4c9be8", 5: "#f0a030", 7: "#d8504a"}  # kernel size -> colour, read off the legend
OTHER_COLOR = "#9b7fd1"
_MBCONV = re.compile(r"^(\d)x\d_MBConv(\d)$")
# how arch_probs.png boxes a layer's derived choice: (edge colour, legend entry)
CHOICE_BOXES = {"argmax": ("red", "derived = the search's argmax"),
                "filled": ("orange", "derived, changed by the fill (an upgrade that spends the budget)"),
                "swapped": ("deepskyblue", "derived, swapped down to meet the budget")}


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on a training box
    import matplotlib.pyplot as plt

    return plt


def read_log(run_dir: Path) -> list[dict]:
    path = run_dir / "log.jsonl"
    if not path.exists():
        return []
    return read_json_lines(path)  # a last line cut short (a write that failed) is no record


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def save_measurement(run_dir: str | Path, network: dict) -> Path:
    """Keep the device's answer (``NetworkOut`` as a dict) in the run folder for ``latency.png``."""
    return write_text_atomic(Path(run_dir) / MEASUREMENT, json.dumps(network, indent=2, default=str))


def _warmup_shade(ax, log: list[dict]) -> None:
    warm = [r["epoch"] + 1 for r in log if r.get("phase") == "warmup"]
    if warm:
        ax.axvspan(min(warm) - 0.5, max(warm) + 0.5, color="0.92", zorder=0, label="warm-up (weights only)")


def plot_curves(log: list[dict], path: Path, *, target_ms: float | None = None,
                max_ms: float | None = None) -> Path:
    plt = _plt()
    epochs = [r["epoch"] + 1 for r in log]
    fig, (ax_lat, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    _warmup_shade(ax_lat, log)
    if any("expected_ms" in r for r in log):
        ax_lat.plot(epochs, [r.get("expected_ms") for r in log], "o-", label="E[LAT] (expected, probabilities)")
        ax_lat.plot(epochs, [r.get("predicted_ms") for r in log], "s--", label="argmax net, predicted")
        if any("projected_ms" in r for r in log):
            ax_lat.plot(epochs, [r.get("projected_ms") for r in log], "^:", label="argmax projected under max")
        if target_ms is not None:
            ax_lat.axhline(target_ms, color="tab:green", lw=1, label=f"target {target_ms:g} ms")
        if max_ms is not None:
            ax_lat.axhline(max_ms, color="tab:red", lw=1.5, ls="--", label=f"hard limit {max_ms:g} ms")
        ax_lat.set(ylabel="latency (ms)")
    else:
        ax_lat.text(0.5, 0.5, "no latency table in this search", ha="center", transform=ax_lat.transAxes)
    ax_lat.set(xlabel="epoch", title="latency per epoch")
    ax_lat.legend(fontsize=8)
    _warmup_shade(ax_acc, log)
    ax_acc.plot(epochs, [r["train_acc"] for r in log], "o-", label="train (sampled paths)")
    ax_acc.plot(epochs, [r["valid_acc"] for r in log], "s-", label="valid (argmax net)")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title="accuracy per epoch")
    ax_acc.legend(fontsize=8, loc="lower right")
    for ax in (ax_lat, ax_acc):
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def arch_probs_figure(log: list[dict], layers: list[tuple[str, ...]], layer_titles: list[str] | None = None,
                      final: list[str] | None = None, argmax: list[str] | None = None,
                      filled: set[int] | frozenset[int] = frozenset()):
    """One heatmap per layer (its own candidates x epochs; layers have different candidate lists, so every
    panel is labelled with its own). The derived choice is boxed in the last column: red where it is the
    argmax, orange where the fill upgraded it and blue where the budget's projection swapped it down (layers
    in ``filled`` were filled; other changes were swaps), with the argmax it replaced outlined in white."""
    plt = _plt()
    from matplotlib.patches import Patch

    n = len(layers)
    ncols = min(7, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols + 1.6, 2.0 * nrows + 1.2), squeeze=False)
    epochs = [r["epoch"] + 1 for r in log]
    n_warm = sum(r.get("phase") == "warmup" for r in log)
    # the scale ends at the largest probability seen: a short search moves them by tenths, not to 1
    vmax = max(0.3, max(q for r in log for p in r["probs"] for q in p))
    im = None
    shown: dict[str, Patch] = {}
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        probs = [[r["probs"][i][j] for r in log] for j in range(len(layers[i]))]  # (candidates, epochs)
        im = ax.imshow(probs, aspect="auto", cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest",
                       extent=(epochs[0] - 0.5, epochs[-1] + 0.5, len(layers[i]) - 0.5, -0.5))
        if n_warm:
            ax.axvline(n_warm + 0.5, color="white", lw=1, ls=":")
        if final is not None and final[i] in layers[i]:
            was = argmax[i] if argmax is not None and argmax[i] in layers[i] else final[i]
            kind = "argmax" if was == final[i] else "filled" if i in filled else "swapped"
            color, label = CHOICE_BOXES[kind]
            box = (epochs[-1] - 0.5, layers[i].index(final[i]) - 0.5)
            ax.add_patch(plt.Rectangle(box, 1, 1, fill=False, ec=color, lw=2))
            shown[kind] = Patch(fill=False, ec=color, lw=2, label=label)
            if was != final[i]:
                ax.add_patch(plt.Rectangle((epochs[-1] - 0.5, layers[i].index(was) - 0.5), 1, 1, fill=False,
                                           ec="white", lw=1.2, ls="--"))
                shown["was"] = Patch(fill=False, ec="0.4", lw=1.2, ls="--", label="the argmax it replaced")
        ax.set_yticks(range(len(layers[i])))
        ax.set_yticklabels(candidate_labels(layers[i]), fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(layer_titles[i] if layer_titles else f"layer {i}", fontsize=8)
    fig.suptitle("architecture probabilities per layer over epochs (dotted: end of warm-up)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 if shown else 0, 0.93, 0.96))
    if shown:
        order = [k for k in (*CHOICE_BOXES, "was") if k in shown]
        fig.legend(handles=[shown[k] for k in order], loc="lower center", ncol=len(order), fontsize=8,
                   frameon=False)
    if im is not None:
        fig.colorbar(im, cax=fig.add_axes((0.945, 0.15, 0.012, 0.7)), label="probability")
    return fig


def candidate_labels(candidates: tuple[str, ...]) -> list[str]:
    """Short tick labels of a layer's candidates: ``3x3_MBConv6`` -> ``3x3 E6``."""
    return [c.replace("_MBConv", " E") for c in candidates]


def plot_arch_probs(log: list[dict], layers: list[tuple[str, ...]], path: Path,
                    layer_titles: list[str] | None = None, final: list[str] | None = None,
                    argmax: list[str] | None = None, filled: set[int] | frozenset[int] = frozenset()) -> Path:
    fig = arch_probs_figure(log, layers, layer_titles, final, argmax, filled)
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return path


def _block_style(op: str) -> tuple[str, float, str]:
    """(colour, height 0..1, label) of a searchable block: height encodes the expansion ratio."""
    if m := _MBCONV.match(op):
        k, e = int(m[1]), int(m[2])
        return KERNEL_COLORS.get(k, OTHER_COLOR), 0.3 + 0.08 * e, f"{k}x{k}\nE{e}"
    return OTHER_COLOR, 0.7, op.replace("_", "\n")


def plot_arch(arch: dict, path: Path, *, predicted_ms: float | None = None,
              measured_ms: float | None = None) -> Path:
    plt = _plt()
    from matplotlib.patches import Patch, Rectangle

    blocks = arch.get("blocks") or [{"op": c} for c in arch["choices"]]
    n = len(blocks)
    fig, ax = plt.subplots(figsize=(max(10.0, 0.62 * (n + 4)), 3.8))
    ax.add_patch(Rectangle((0, 0.2), 1.6, 0.6, fc="0.75", ec="k"))
    ax.text(0.8, 0.5, f"stem\n{arch['resolution']}px", ha="center", va="center", fontsize=7)
    x = 2.0
    for i, b in enumerate(blocks):
        if b["op"] == "zero":  # skipped: only the shortcut remains
            ax.add_patch(Rectangle((x, 0.45), 0.9, 0.1, fc="white", ec="0.5", ls="--"))
            ax.text(x + 0.45, 0.6, "skip", ha="center", fontsize=6, color="0.4")
        else:
            color, h, label = _block_style(b["op"])
            ax.add_patch(Rectangle((x, 0.5 - h / 2), 0.9, h, fc=color, ec="k"))
            ax.text(x + 0.45, 0.5, label, ha="center", va="center", fontsize=7)
        if b.get("stride", 1) > 1 or i == 0 or b.get("out_channels") != blocks[i - 1].get("out_channels"):
            size = b.get("input_size")
            size = size // b.get("stride", 1) if size else None
            ax.text(x, 0.08, f"{b.get('out_channels', '')}ch" + (f"\n{size}px" if size else ""), fontsize=6,
                    va="top")
            ax.axvline(x - 0.05, ymin=0.08, ymax=0.95, color="0.8", lw=0.8, zorder=0)
        ax.text(x + 0.45, 0.93, str(i), ha="center", fontsize=6, color="0.4")
        x += 1.0
    ax.add_patch(Rectangle((x + 0.1, 0.2), 1.6, 0.6, fc="0.75", ec="k"))
    ax.text(x + 0.9, 0.5, f"1x1 mix\npool, fc\n{arch['num_classes']} cls", ha="center", va="center", fontsize=7)
    ax.set(xlim=(-0.2, x + 2.0), ylim=(-0.25, 1.05))
    ax.axis("off")
    title = f"derived {arch['space']} @ {arch['resolution']}px: " \
            f"{sum(b['op'] != 'zero' for b in blocks)} of {n} searchable blocks kept"
    if predicted_ms is not None:
        title += f"; predicted {predicted_ms:.3f} ms"
    if measured_ms is not None:
        title += f", measured {measured_ms:.3f} ms"
    ax.set_title(title, fontsize=10)
    legend = [Patch(fc=c, ec="k", label=f"kernel {k}x{k}") for k, c in KERNEL_COLORS.items()]
    legend.append(Patch(fc="white", ec="k", label="height: expansion ratio (E3 short, E6 tall)"))
    ax.legend(handles=legend, loc="lower right", fontsize=7, ncol=4, bbox_to_anchor=(1.0, -0.08))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency(derived: dict, network: dict, path: Path) -> Path:
    """Bars: the table's raw sum, its calibrated prediction, the device's median (p10-p90 whisker)."""
    plt = _plt()
    m = network["measured"]
    rows: list[tuple[str, float, Any, str]] = []
    if network.get("predicted_ms") is not None:
        rows.append(("predicted: table sum", network["predicted_ms"], None, "tab:blue"))
    if network.get("calibrated_ms") is not None:
        rows.append(("predicted: calibrated", network["calibrated_ms"], None, "tab:cyan"))
    elif derived.get("predicted_ms") is not None:
        rows.append(("predicted by the search", derived["predicted_ms"], None, "tab:cyan"))
    rows.append(("measured on the device (median)", m["median_ms"],
                 [[m["median_ms"] - m["p10_ms"]], [m["p90_ms"] - m["median_ms"]]], "tab:orange"))
    fig, ax = plt.subplots(figsize=(8, 2.2 + 0.5 * len(rows)))
    for y, (_, v, err, color) in enumerate(rows):
        ax.barh(y, v, color=color, xerr=err, capsize=6)
        note = f"{v:.3f} ms"
        if y < len(rows) - 1 and m["median_ms"] > 0:
            note += f"  ({100 * (v - m['median_ms']) / m['median_ms']:+.1f}% vs measured)"
        ax.text(v if err is None else m["p90_ms"], y, "  " + note, va="center", fontsize=8)
    for name, color, label in (("target_ms", "tab:green", "target"), ("max_ms", "tab:red", "hard limit")):
        if derived.get(name) is not None:
            ax.axvline(derived[name], color=color, ls="--", lw=1.2, label=f"{label} {derived[name]:g} ms")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r[0] for r in rows], fontsize=8)
    ax.set_xlim(0, max(max(r[1] for r in rows), m["p90_ms"], derived.get("max_ms") or 0) * 1.6)
    ax.set(xlabel="latency (ms)", title=f"derived net: predicted vs measured (p10-p90 whisker, "
                                        f"{m.get('count', '?')} runs)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(run_dir: str | Path, *, network: dict | None = None,
                 derived_dir: str | Path | None = None) -> dict[str, Path]:
    """Every picture the run folder has the inputs for, as {"curves_png": path, ...} (keys that never clash
    with derive's own outputs); ``network`` (the device's measurement) is kept too.
    ``derived_dir`` defaults to ``run_dir/derived``."""
    run_dir = Path(run_dir)
    if network is not None:
        save_measurement(run_dir, network)
    log = read_log(run_dir)
    derived_dir = Path(derived_dir) if derived_dir is not None else run_dir / "derived"
    arch = _read_json(derived_dir / "arch.json")
    derived = _read_json(derived_dir / "derive.json") or {}
    measured = network or _read_json(run_dir / MEASUREMENT)
    measured_ms = (measured.get("measured") or {}).get("median_ms") if measured else None
    out: dict[str, Path] = {}
    if log:
        out["curves_png"] = plot_curves(log, run_dir / "curves.png", target_ms=derived.get("target_ms"),
                                    max_ms=derived.get("max_ms"))
    if log and arch is not None:
        space = get_space(arch["space"], arch["resolution"], arch["width_mult"], arch["num_classes"])
        layers = [layer.candidates for layer in space.layers]
        titles = [f"{i}: {lay.h}px {lay.cin}->{lay.cout} s{lay.stride}" for i, lay in enumerate(space.layers)]
        if all(len(r["probs"]) == len(layers) for r in log):
            out["arch_probs_png"] = plot_arch_probs(log, layers, run_dir / "arch_probs.png", titles,
                                                    derived.get("choices", arch["choices"]), derived.get("argmax"),
                                                    {f["layer"] for f in derived.get("fills") or []})
    if arch is not None:
        out["arch_png"] = plot_arch(arch, run_dir / "arch.png", predicted_ms=derived.get("predicted_ms"),
                                measured_ms=measured_ms)
    if measured_ms is not None:
        out["latency_png"] = plot_latency(derived, measured, run_dir / "latency.png")
    return out
