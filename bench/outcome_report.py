"""Targets, table and picture of the search-outcome benchmark (pure functions of its measured results).

A result row is a dict: ``name``, ``kind`` ("random" or the search algorithm), ``choices``,
``measured_ms``, ``predicted_ms``, ``accs`` (one test accuracy per seed), and for searched nets
``budget_ms`` and ``budget_label``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

LATENCY_SLACK = 1.05  # the measurement noise allowed on "measured <= budget"
POOL_QUANTILE = 75


def mean_acc(row: dict) -> float:
    return float(np.mean(row["accs"]))


def random_pool(row: dict, randoms: Sequence[dict]) -> list[dict]:
    """The random nets whose measured latency is not above ``row``'s."""
    return [r for r in randoms if r["measured_ms"] <= row["measured_ms"]]


def pool_quantile(row: dict, randoms: Sequence[dict], q: float = POOL_QUANTILE) -> float | None:
    pool = random_pool(row, randoms)
    return float(np.percentile([mean_acc(r) for r in pool], q)) if pool else None


def check_targets(searched: Sequence[dict], randoms: Sequence[dict]) -> list[dict]:
    """The three targets for one algorithm's searched nets (ordered by budget).

    -> [{"target", "pass", "detail"}]; a comparison that cannot be made (no random net as fast) fails:
    the target is not shown.
    """
    rows = sorted(searched, key=lambda r: r["budget_ms"])
    out = []
    over = [f"{r['budget_label']} {r['measured_ms']:.3f} ms vs budget {r['budget_ms']:.3f} ms "
            f"({r['measured_ms'] / r['budget_ms']:.3f}x)" for r in rows]
    out.append({"target": f"measured latency <= budget x {LATENCY_SLACK:g}",
                 "pass": all(r["measured_ms"] <= r["budget_ms"] * LATENCY_SLACK for r in rows),
                 "detail": "; ".join(over)})
    ordered = all(a["choices"] == b["choices"] or a["measured_ms"] <= b["measured_ms"]
                  for a, b in zip(rows, rows[1:], strict=False))
    out.append({"target": "measured latencies ordered like the budgets", "pass": ordered,
                "detail": " <= ".join(f"{r['measured_ms']:.3f}" for r in rows)
                          + " ms (an identical net at two budgets counts as ordered)"})
    parts, ok = [], True
    for r in rows:
        q = pool_quantile(r, randoms)
        n = len(random_pool(r, randoms))
        if q is None:
            ok = False
            parts.append(f"{r['budget_label']} acc {mean_acc(r):.4f}: no random net measures <= its "
                         f"{r['measured_ms']:.3f} ms, cannot compare")
        else:
            ok &= mean_acc(r) >= q
            parts.append(f"{r['budget_label']} acc {mean_acc(r):.4f} vs p{POOL_QUANTILE} {q:.4f} of {n} random")
    out.append({"target": f"accuracy >= p{POOL_QUANTILE} of random nets at <= its measured latency", "pass": ok,
                "detail": "; ".join(parts)})
    return out


def noise_figures(accs: dict[str, Sequence[float]]) -> dict[str, float]:
    """How far the retrain tells nets apart. accs: net -> per-seed accuracies (2+ seeds, 2+ nets).

    -> mean; the seed standard deviation within a net (pooled); the standard deviation of the nets' seed
    means; ``ratio`` = the latter over the noise of one seed mean. Near 1, ranking nets is mostly seed noise.
    """
    seeds = min(len(v) for v in accs.values())
    means = np.array([np.mean(v) for v in accs.values()])
    within = float(np.sqrt(np.mean([np.var(v, ddof=1) for v in accs.values()])))
    between = float(np.std(means, ddof=1))
    return {"mean": float(means.mean()), "within_sd": within, "between_sd": between,
            "ratio": between / (within / np.sqrt(seeds)) if within > 0 else float("inf")}


def format_noise(randoms: Sequence[dict]) -> str | None:
    """One line on the random nets' retrain noise, or None with fewer than 2 seeds or nets."""
    accs = {r["name"]: r["accs"] for r in randoms}
    if len(accs) < 2 or min(len(v) for v in accs.values()) < 2:
        return None
    f = noise_figures(accs)
    return (f"  retrain noise (random nets): seed sd within a net {100 * f['within_sd']:.2f} points, sd of the "
            f"nets' means {100 * f['between_sd']:.2f} points, ratio to a seed mean's noise {f['ratio']:.2f}")


def format_table(rows: Sequence[dict], randoms: Sequence[dict]) -> str:
    head = (f"{'net':<22} {'budget ms':>9} {'pred ms':>8} {'meas ms':>8} {'meas/bud':>8} {'acc mean':>8} "
            f"{'acc per seed':<16} {'rand<=lat n':>11} {'p75 acc':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        budget = r.get("budget_ms")
        q = pool_quantile(r, randoms)
        lines.append(
            f"{r['name']:<22} {budget if budget is not None else float('nan'):9.3f} "
            f"{r['predicted_ms'] if r.get('predicted_ms') is not None else float('nan'):8.3f} "
            f"{r['measured_ms']:8.3f} "
            f"{r['measured_ms'] / budget if budget else float('nan'):8.3f} {mean_acc(r):8.4f} "
            f"{' '.join(f'{a:.3f}' for a in r['accs']):<16} {len(random_pool(r, randoms)):>11d} "
            f"{q if q is not None else float('nan'):8.4f}")
    lat = [r["measured_ms"] for r in randoms]
    acc = [mean_acc(r) for r in randoms]
    qs = [0, 25, 50, 75, 100]
    lines.append(f"{'random nets (' + str(len(randoms)) + ')':<22} measured ms p0/p25/p50/p75/p100 "
                 + "/".join(f"{v:.3f}" for v in np.percentile(lat, qs))
                 + "; acc p0/p25/p50/p75/p100 " + "/".join(f"{v:.4f}" for v in np.percentile(acc, qs)))
    return "\n".join(lines)


MARKERS = {"grad": ("*", "tab:red"), "reinforce": ("D", "tab:blue")}


def plot(path: str | Path, panels: Sequence[dict]) -> Path:
    """One panel per space: random nets as a cloud, searched nets marked, budgets as vertical lines.

    panels: [{"title", "randoms": rows, "searched": rows, "budgets": [(label, ms)], "controls": rows (optional)}]
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.2), squeeze=False)
    for ax, p in zip(axes[0], panels, strict=True):
        rl = [r["measured_ms"] for r in p["randoms"]]
        ra = [mean_acc(r) for r in p["randoms"]]
        spread = [np.ptp(r["accs"]) / 2 for r in p["randoms"]]
        ax.errorbar(rl, ra, yerr=spread, fmt="o", color="0.55", ms=5, alpha=0.8, lw=0.8,
                    label=f"random nets ({len(rl)})")
        if p.get("controls"):  # the random nets put through derive under each budget
            ax.scatter([r["measured_ms"] for r in p["controls"]], [mean_acc(r) for r in p["controls"]],
                       marker="x", color="tab:orange", s=22, alpha=0.8,
                       label=f"random nets through derive ({len(p['controls'])})")
        for label, ms in p["budgets"]:
            ax.axvline(ms, color="0.3", ls="--", lw=0.9)
            ax.text(ms, 1.0, f" {label}", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
        for kind in sorted({r["kind"] for r in p["searched"]}):
            rows = [r for r in p["searched"] if r["kind"] == kind]
            m, c = MARKERS.get(kind, ("s", "tab:green"))
            ax.errorbar([r["measured_ms"] for r in rows], [mean_acc(r) for r in rows],
                        yerr=[np.ptp(r["accs"]) / 2 for r in rows], fmt=m, color=c, ms=11, lw=1,
                        label=f"searched ({kind})")
            for r in rows:
                ax.annotate(r["budget_label"], (r["measured_ms"], mean_acc(r)), textcoords="offset points",
                            xytext=(6, -10), fontsize=8, color=c)
        ax.set(xlabel="measured latency on the device (ms, median)", ylabel="held-out test accuracy (mean of seeds)")
        ax.set_title(p["title"], fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
