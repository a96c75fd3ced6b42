"""Derived nets per stage (depth, kernel, expansion), the tables' cost character, and the picture of
bench/specialisation.py."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from shared.spaces import SearchSpace

_KERNEL = re.compile(r"^([357])x\1_")
_EXPAND = re.compile(r"MBConv(\d)$")
SKIPS = ("zero", "identity")  # a layer that computes nothing (zero) or passes its input on (identity)


def kernel(name: str) -> int | None:
    m = _KERNEL.match(name)
    return int(m[1]) if m else None


def expand(name: str) -> int | None:
    m = _EXPAND.search(name)
    return int(m[1]) if m else None


def stages(space: SearchSpace) -> list[tuple[int, list[int]]]:
    """(output width, layer indices) per stage: consecutive searchable layers of one width."""
    out: list[tuple[int, list[int]]] = []
    for i, layer in enumerate(space.layers):
        if out and out[-1][0] == layer.cout:
            out[-1][1].append(i)
        else:
            out.append((layer.cout, [i]))
    return out


def stage_summary(space: SearchSpace, choices: Sequence[str]) -> list[dict]:
    rows = []
    for width, idx in stages(space):
        ops = [choices[i] for i in idx]
        live = [o for o in ops if o not in SKIPS]
        ks = [kernel(o) for o in live if kernel(o) is not None]
        es = [expand(o) for o in live if expand(o) is not None]
        rows.append({"width": width, "layers": len(idx), "depth": len(live), "ops": ops,
                     "mean_kernel": float(np.mean(ks)) if ks else None,
                     "mean_expand": float(np.mean(es)) if es else None})
    return rows


def format_stages(space: SearchSpace, summaries: Mapping[str, list[dict]]) -> str:
    names = list(summaries)
    head = f"{'stage':<10}" + "".join(f"{n + ': depth k e':>28}" for n in names) + "   ops"
    lines = [head]
    for s, (width, _) in enumerate(stages(space)):
        cells, ops = "", []
        for n in names:
            r = summaries[n][s]
            k = f"{r['mean_kernel']:.1f}" if r["mean_kernel"] is not None else "-"
            e = f"{r['mean_expand']:.1f}" if r["mean_expand"] is not None else "-"
            cells += f"{str(r['depth']) + '/' + str(r['layers']) + '  ' + k + '  ' + e:>28}"
            ops.append(" ".join(r["ops"]))
        lines.append(f"{'w' + str(width):<10}{cells}   " + " | ".join(ops))
    return "\n".join(lines)


def format_costs(space: SearchSpace, tables: Mapping[str, Mapping[str, float]]) -> str:
    """Per stage, each candidate's table cost relative to the stage's cheapest, for each table: what
    makes the two tables differ in character."""
    lines = []
    for width, idx in stages(space):
        layer = space.layers[idx[-1]]  # a non-reducing layer where there is one
        cands = [c for c in layer.candidates if c != "zero"]
        for tname, entries in tables.items():
            cost = {c: entries.get(layer.spec(c).key) for c in cands}
            known = [v for v in cost.values() if v]  # identity may cost 0: the ratio is to the cheapest > 0
            lo = min(known) if known else float("nan")
            lines.append(f"w{width:<5} {tname:<16} " + "  ".join(
                f"{c} ?" if cost[c] is None else f"{c} {cost[c] / lo:.2f}" for c in cands)
                + f"   (cheapest > 0: {lo * 1000:.1f} us)")
    return "\n".join(lines)


def plot_nets(path: str | Path, space: SearchSpace, nets: Mapping[str, Sequence[str]],
              summaries: Mapping[str, list[dict]], title: str) -> Path:
    """Top: each net as a row of blocks (height = expansion, colour = kernel, skipped layers dashed).
    Bottom: per stage, depth, mean kernel and mean expansion of each net side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(nets)
    colours = {3: "#9ecae1", 5: "#4292c6", 7: "#08306b", None: "#bbbbbb"}
    fig = plt.figure(figsize=(13, 3.0 + 1.3 * len(names)))
    grid = fig.add_gridspec(len(names) + 1, 3, height_ratios=[1] * len(names) + [1.6])
    bounds = np.cumsum([len(idx) for _, idx in stages(space)])[:-1]
    for row, n in enumerate(names):
        ax = fig.add_subplot(grid[row, :])
        for i, op in enumerate(nets[n]):
            if op in SKIPS:
                ax.add_patch(Rectangle((i + 0.1, 0), 0.8, 0.3, fill=False, ls="--", ec="0.6"))
                ax.text(i + 0.5, 0.15, op[:4], ha="center", va="center", fontsize=6, color="0.5")
                continue
            e = expand(op)
            h = 0.3 + 0.6 * (e / 6 if e else 0.5)
            k = kernel(op)
            ax.add_patch(Rectangle((i + 0.1, 0), 0.8, h, color=colours.get(k, "#bbbbbb")))
            label = f"{k}x{k}\ne{e}" if e else op.replace("_", "\n")
            ax.text(i + 0.5, h + 0.03, label, ha="center", va="bottom", fontsize=6)
        for b in bounds:
            ax.axvline(b, color="0.7", lw=0.8)
        ax.set(xlim=(0, len(space.layers)), ylim=(0, 1.35), yticks=[])
        ax.set_ylabel(n, rotation=0, ha="right", va="center", fontsize=9)
        ax.set_xticks(np.arange(len(space.layers)) + 0.5, [str(i) for i in range(len(space.layers))], fontsize=7)
        if row == 0:
            ax.set_title(title + "  (block height = expansion, colour = kernel 3/5/7, dashed = skipped)",
                         fontsize=10)
    labels = [f"w{r['width']}" for r in summaries[names[0]]]
    x = np.arange(len(labels))
    for col, (key, ylabel) in enumerate((("depth", "live layers"), ("mean_kernel", "mean kernel"),
                                         ("mean_expand", "mean expansion"))):
        ax = fig.add_subplot(grid[len(names), col])
        wbar = 0.8 / len(names)
        for j, n in enumerate(names):
            vals = [r[key] if r[key] is not None else 0 for r in summaries[n]]
            ax.bar(x + (j - (len(names) - 1) / 2) * wbar, vals, wbar, label=n)
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=9)
        if col == 0:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
