"""What the search reports every epoch: the argmax net's valid accuracy and the distribution's state."""

from __future__ import annotations

import contextlib

import torch
from torch.utils.data import DataLoader

from search_client.data.images import SKIPPED_LABEL
from search_client.data.loading import to_device
from search_client.engine import ddp
from search_client.engine.loop import bn_batch_stats
from search_client.engine.steps import Precision
from search_client.latency.constraint import choose_under
from search_client.latency.model import LatencyModel
from search_client.supernet.supernet import SuperNet


@torch.no_grad()
def evaluate(net: SuperNet, dl: DataLoader, dist: ddp.Dist, max_batches: int | None, *,
             precision: Precision | None = None, channels_last: bool = False) -> float:
    """Accuracy of the argmax net (BN on batch statistics) over the readable images of ``dl``."""
    net.set_choices()  # argmax path
    correct = total = torch.zeros((), dtype=torch.int64, device=dist.device)
    autocast = precision.autocast() if precision is not None else contextlib.nullcontext()
    with bn_batch_stats(net), autocast:
        for i, batch in enumerate(dl):
            if max_batches is not None and i >= max_batches:
                break
            x, y = to_device(batch, dist.device, channels_last=channels_last)
            correct = correct + (net(x).argmax(1) == y).sum()  # (B, classes) -> (B,) -> scalar
            total = total + (y != SKIPPED_LABEL).sum()
    correct, total = ddp.sum_all([float(correct), float(total)], dist)
    return correct / max(total, 1)


def arch_report(net: SuperNet, lat: LatencyModel | None, max_ms: float | None,
                ceiling: float | None = None) -> dict:
    """Logged every epoch: the distribution, its argmax, and the argmax projected under max_ms and
    filled up to ``ceiling`` (what derive would write now)."""
    with torch.no_grad():
        probs = [p.detach().cpu() for p in net.full_probs()]
        rep = {"entropy": net.entropy(), "max_prob": sum(float(p.max()) for p in probs) / max(len(probs), 1),
               "choices": net.derive(),
               "probs": [[round(float(q), 4) for q in p] for p in probs]}
        if lat is not None:
            rep["expected_ms"] = float(lat.expected_latency(probs))
            rep["predicted_ms"] = lat.predict(rep["choices"])
            if max_ms is not None:
                _, proj = choose_under([m.names for m in net.mixed_ops], probs, lat.layer_costs, lat.predict,
                                       max_ms, ceiling)
                rep["projected_choices"], rep["projected_ms"] = proj.choices, proj.predicted_ms
    return rep
