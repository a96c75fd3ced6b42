"""Fidelity: how well a table predicts whole networks measured on the device.

Random architectures of the table's space are measured end to end by the device; the raw op sum,
the one-global-factor baseline and the calibrated model are scored against them (RMSE, RMSPE, the
share within +-5% and +-10%), and a scatter plot is written. Calibration networks and validation
networks are kept disjoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from shared.arch import make_arch
from shared.calibration import Calibration, error_stats, fit_scale
from shared.sampling import sample_choices
from shared.schemas import NetworkOut
from shared.spaces import SearchSpace

__all__ = ["Measured", "format_report", "measure_all", "predictions", "sample_choices", "scatter_png", "score"]


@dataclass
class Measured:
    choices: list[str]
    keys: list[str]
    measured_ms: float
    network_id: str


def measure_all(client, table_id: str, space: SearchSpace, archs: Sequence[list[str]],
                progress: Callable[[int], None] = lambda n: None) -> list[Measured]:
    """Submit every architecture, then wait for each (the device measures them one at a time)."""
    submitted = []
    for choices in archs:
        arch = make_arch(space, choices)
        wire = {"space": arch.space, "resolution": arch.resolution, "width_mult": arch.width_mult,
                "num_classes": arch.num_classes, "choices": arch.choices}
        submitted.append((arch, client.measure_network(table_id, wire)))
    out = []
    for i, (arch, net_id) in enumerate(submitted):
        res: NetworkOut = client.wait_network(net_id)
        if res.status != "done" or res.measured is None:
            raise RuntimeError(f"network {net_id} {res.status}: {res.error}")
        out.append(Measured(arch.choices, arch.keys, res.measured.median_ms, net_id))
        progress(i + 1)
    return out


def score(table: dict[str, float], calibration: Calibration | None, calib_set: Sequence[Measured],
          valid_set: Sequence[Measured]) -> dict[str, dict]:
    """Error statistics of each model on the validation networks."""
    measured = [m.measured_ms for m in valid_set]
    raw = [sum(table[k] for k in m.keys) for m in valid_set]
    report = {"raw sum": error_stats(raw, measured)}
    if len(calib_set) >= 1:
        factor = fit_scale([m.keys for m in calib_set], [m.measured_ms for m in calib_set], table)
        report["one factor"] = {**error_stats([factor * r for r in raw], measured), "factor": factor}
    if calibration is not None:
        report["calibrated"] = error_stats([calibration.predict(m.keys, table) for m in valid_set], measured)
    return report


def predictions(table: dict[str, float], calibration: Calibration | None,
                valid_set: Sequence[Measured]) -> dict[str, list[float]]:
    out = {"raw sum": [sum(table[k] for k in m.keys) for m in valid_set]}
    if calibration is not None:
        out["calibrated"] = [calibration.predict(m.keys, table) for m in valid_set]
    return out


def format_report(report: dict[str, dict]) -> str:
    lines = [f"{'model':<12} {'n':>4} {'RMSE ms':>9} {'RMSPE':>7} {'mean err':>9} {'+-5%':>6} {'+-10%':>6}"]
    for name, r in report.items():
        lines.append(f"{name:<12} {r['n']:>4} {r['rmse_ms']:9.3f} {100 * r['rmspe']:6.2f}% "
                     f"{100 * r['mean_pe']:+8.2f}% {100 * r['within_5']:5.0f}% {100 * r['within_10']:5.0f}%")
    return "\n".join(lines)


def scatter_png(path: str | Path, preds: dict[str, list[float]], measured: Sequence[float], title: str) -> Path:
    """Predicted vs measured with the y = x line and the +-10% band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 7))
    everything = [*measured, *(v for p in preds.values() for v in p)]
    lo, hi = min(everything) * 0.9, max(everything) * 1.1
    line = [lo, hi]
    ax.fill_between(line, [v * 0.9 for v in line], [v * 1.1 for v in line], color="0.9", label="+-10%")
    ax.plot(line, line, "k--", lw=1, label="y = x")
    for (name, p), marker in zip(preds.items(), ("o", "s", "^"), strict=False):
        ax.scatter(measured, p, s=18, marker=marker, label=name, alpha=0.8)
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="measured latency (ms)", ylabel="predicted latency (ms)",
           )
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
