"""The one block a search (or a derivation) ends with: what was derived, the latency it is predicted at
(calibrated where the search had a calibration; the raw table sum only where it had none), what the
device measured and how far the prediction was off, whether the net is within its budget, and where the
pictures and files are."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Measurement:
    """The device's measurement of the derived net (from ``NetworkOut.measured``)."""

    median_ms: float
    p10_ms: float | None = None
    p90_ms: float | None = None
    count: int | None = None

    @classmethod
    def of(cls, network: Any) -> Measurement | None:
        """From a ``NetworkOut`` or its dict; None when it holds no measurement."""
        measured = network.get("measured") if isinstance(network, dict) else getattr(network, "measured", None)
        if measured is None:
            return None
        get = measured.get if isinstance(measured, dict) else lambda name: getattr(measured, name, None)
        return cls(get("median_ms"), get("p10_ms"), get("p90_ms"), get("count"))


@dataclass
class SearchSummary:
    derived: dict  # derive.json: choices, predicted_ms, max_ms, swaps, fills, calibrated, ...
    paths: dict[str, Path] = field(default_factory=dict)  # derive's files and write_report's pictures
    measured: Measurement | None = None
    budget_label: str | None = None  # "p50" when --max-ms was relative

    def lines(self) -> list[str]:
        s = self.derived
        out = ["", "summary", f"  derived    {' '.join(s['choices'])}"]
        if note := changes_note(s):
            out.append(f"             {note}")
        predicted = s.get("predicted_ms")
        if predicted is None:
            out.append("  predicted  - (no latency table in this search)")
        elif s.get("calibrated"):
            loo = s.get("calibration_loo_rmspe")
            loo_note = f", leave-one-out error {100 * loo:.1f}%" if loo is not None else ""
            out.append(f"  predicted  {predicted:.3f} ms, calibrated (calibration v{s.get('calibration_version')}"
                       f"{loo_note})")
        else:
            out.append(f"  predicted  {predicted:.3f} ms, the raw table sum (the table has no calibration for this "
                       "space: search-client calibrate fits one)")
        m = self.measured
        if m is not None:
            spread = f", p10-p90 {m.p10_ms:.3f}-{m.p90_ms:.3f} ms" if m.p10_ms is not None and m.p90_ms else ""
            runs = f" of {m.count} runs" if m.count else ""
            line = f"  measured   {m.median_ms:.3f} ms (median{runs}{spread})"
            if predicted is not None and m.median_ms > 0:
                against = "calibrated prediction" if s.get("calibrated") else "raw table sum"
                line += f"; error {100 * (predicted - m.median_ms) / m.median_ms:+.1f}% ({against} vs measured)"
            out.append(line)
        if (verdict := self.verdict()) is not None:
            out.append(f"  budget     {verdict}")
        pictures = [str(p) for k, p in self.paths.items() if k.endswith("_png")]
        if pictures:
            out.append(f"  pictures   {' '.join(pictures)}")
        files = [Path(p) for k, p in self.paths.items() if not k.endswith("_png")]
        if files:
            out.append(f"  files      {files[0].parent}/: {' '.join(p.name for p in files)}")
        return out

    def verdict(self) -> str | None:
        """Within or over ``max_ms``: the measured latency where there is one, else the prediction."""
        budget, predicted = self.derived.get("max_ms"), self.derived.get("predicted_ms")
        if budget is None:
            return None
        label = f"{budget:.3f} ms" + (f" ({self.budget_label})" if self.budget_label else "")
        if self.measured is not None:
            what, ms = "measured", self.measured.median_ms
        elif predicted is not None:
            what, ms = "predicted", predicted
        else:
            return label
        gap = 100 * abs(ms - budget) / budget
        if ms <= budget:
            return f"{label}: within, {what} {ms:.3f} ms is {gap:.1f}% under it"
        return f"{label}: OVER by {gap:.1f}%, {what} {ms:.3f} ms"


def changes_note(s: dict) -> str:
    """What derive changed in the argmax: swaps down to meet max_ms, upgrades to use the budget."""
    parts = [f"{len(s['swaps'])} swap(s) down to meet max_ms {s['max_ms']:g}"] if s.get("swaps") else []
    if s.get("fills"):
        parts.append(f"{len(s['fills'])} upgrade(s) to spend the budget up to {s['fill_ceiling_ms']:.3f} ms")
    return f"(argmax {s['argmax_predicted_ms']:.3f} ms; {'; '.join(parts)})" if parts else ""


__all__ = ["Measurement", "SearchSummary", "changes_note"]
