"""From a search checkpoint to a deployable net: argmax choices (projected under ``max_ms``), the
architecture JSON (+ ProxylessNAS ``net.config``), the standalone net with the supernet's weights, and
an ONNX file checked against torch with onnxruntime."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from search_client.engine import checkpoint
from search_client.engine.search import CKPT_KIND, SearchConfig, latency_model, make_space
from search_client.latency.budgets import Limit, TableBudget, joint_costs, joint_predict
from search_client.latency.constraint import choose_under, fill_ceiling
from search_client.report.plots import write_report
from search_client.supernet.supernet import SuperNet
from shared.arch import Arch, build_net, make_arch, to_net_config
from shared.files import write_text_atomic

STANDALONE_KIND = "standalone"
ONNX_ATOL = 1e-4


class OnnxMismatchError(RuntimeError):
    pass


def export_onnx(net: nn.Module, resolution: int, path: str | os.PathLike, *, opset: int = 17) -> Path:
    """Eval-mode export with a dynamic batch axis (TorchScript exporter: stable for these plain convs)."""
    path = Path(path)
    net = net.eval()
    x = torch.randn(1, 3, resolution, resolution)
    torch.onnx.export(net, (x,), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                      dynamo=False)
    return path


def check_onnx(net: nn.Module, path: str | os.PathLike, resolution: int, *, batch: int = 2,
               atol: float = ONNX_ATOL, seed: int = 0) -> float:
    """Max |onnxruntime - torch| on a random batch; raises if over ``atol``."""
    import onnxruntime as ort

    x = torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = net.eval()(x).cpu().numpy()  # (B, classes)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    diff = float(np.max(np.abs(got - ref)))
    if not diff <= atol:
        raise OnnxMismatchError(f"{path}: onnxruntime differs from torch by {diff:.3g} (> {atol:g})")
    return diff


def save_standalone(path: str | os.PathLike, net: nn.Module, arch: Arch, **extra) -> Path:
    """The net's state dict with the architecture that rebuilds it (``load_standalone`` reads it)."""
    return checkpoint.save(path, {"kind": STANDALONE_KIND, "arch": arch.model_dump(),
                                  "model": net.state_dict(), **extra})


def load_standalone(path: str | os.PathLike) -> tuple[nn.Module, Arch, dict]:
    ckpt = checkpoint.load(path)
    if ckpt.get("kind") not in (STANDALONE_KIND, "train"):
        raise ValueError(f"{path} holds no standalone net (kind {ckpt.get('kind')!r})")
    arch = Arch.model_validate(ckpt["arch"])
    net = build_net(arch)
    net.load_state_dict(ckpt["model"], strict=True)
    return net, arch, ckpt


def load_supernet(path: str | os.PathLike) -> tuple[SuperNet, SearchConfig, dict]:
    ckpt = checkpoint.load(path, CKPT_KIND)
    cfg = SearchConfig.from_dict(ckpt["config"])
    net = SuperNet(make_space(cfg, ckpt["num_classes"]))
    net.load_state_dict(ckpt["model"], strict=True)
    return net, cfg, ckpt


def _derive_under_all(net: SuperNet, cfg: SearchConfig, ckpt: dict, lat, limit: float | None,
                      budgets: list[TableBudget], probs: list[torch.Tensor], fill: bool | None,
                      summary: dict) -> list[str]:
    """The argmax projected under every table's limit at once (and filled while under every ceiling)."""
    if limit is None:
        raise ValueError("a search over several tables derives under every table's --max-ms; give the first")
    space = net.space
    first = Limit(str((ckpt.get("table") or {}).get("id", "first table")), lat, limit)
    limits = [first, *(Limit(b.label, latency_model(b.entries, space, b.calibration), b.max_ms) for b in budgets)]
    filling = cfg.fill > 0 if fill is None else fill
    ceiling = None
    if filling:  # each table's ceiling over its own limit; the tightest one holds for all
        calibrations = [ckpt.get("calibration") if lat.calibration is not None else None,
                        *(b.calibration for b in budgets)]
        ceiling = min(fill_ceiling(lim.max_ms, cal, cfg.fill_margin) / lim.max_ms
                      for lim, cal in zip(limits, calibrations, strict=True))
    proj, filled = choose_under([m.names for m in net.mixed_ops], probs, joint_costs(limits),
                                joint_predict(limits), 1.0, ceiling)
    summary.update(predicted_ms=lat.predict(filled.choices), argmax_predicted_ms=lat.predict(net.derive()),
                   swaps=proj.swaps, fills=filled.swaps, fill_ceiling_ms=ceiling and ceiling * limit,
                   target_ms=cfg.target_ms,
                   tables=[{"label": lim.label, "max_ms": lim.max_ms, "predicted_ms": lim.lat.predict(filled.choices)}
                           for lim in limits])
    return filled.choices


def derive(ckpt_path: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
           max_ms: float | None | str = "config", fill: bool | None = None, onnx: bool = True,
           atol: float = ONNX_ATOL) -> dict:
    """Write arch.json, net.config (proxyless-mobile), model.pt, model.onnx, derive.json into ``out_dir``
    (default: ``derived/`` beside the checkpoint). ``max_ms="config"`` takes the search's limit;
    ``fill``: spend the budget the projected argmax leaves (True), keep the projected argmax (False), or
    as the search was configured (None: when its ``fill`` > 0)."""
    net, cfg, ckpt = load_supernet(ckpt_path)
    net.eval()
    space = net.space
    limit = cfg.max_ms if max_ms == "config" else max_ms
    lat = latency_model(ckpt.get("latency_entries"), space, ckpt.get("calibration"))
    probs = [p.detach() for p in net.full_probs()]
    summary: dict = {"source": str(ckpt_path), "epoch": ckpt["epoch"], "step": ckpt["step"],
                     "argmax": net.derive(), "max_ms": limit}
    budgets = [TableBudget.from_dict(b) for b in ckpt.get("extra_budgets") or []]
    if lat is not None and budgets:
        choices = _derive_under_all(net, cfg, ckpt, lat, limit, budgets, probs, fill, summary)
    elif lat is not None:
        filling = cfg.fill > 0 if fill is None else fill
        calibration = ckpt.get("calibration") if lat.calibration is not None else None
        ceiling = fill_ceiling(limit, calibration, cfg.fill_margin) if filling else None
        proj, filled = choose_under([m.names for m in net.mixed_ops], probs, lat.layer_costs, lat.predict, limit,
                                    ceiling)
        choices = filled.choices
        summary.update(predicted_ms=filled.predicted_ms, argmax_predicted_ms=lat.predict(net.derive()),
                       swaps=proj.swaps, fills=filled.swaps, fill_ceiling_ms=ceiling, target_ms=cfg.target_ms,
                       calibrated=calibration is not None, calibration_version=(calibration or {}).get("version"),
                       calibration_loo_rmspe=(calibration or {}).get("loo_rmspe"))
    elif limit is not None:
        raise ValueError("max_ms needs the latency table, and this checkpoint has none")
    else:
        choices = net.derive()
    summary["choices"] = choices
    arch = make_arch(space, choices)

    out = Path(out_dir) if out_dir is not None else Path(ckpt_path).parent / "derived"
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"arch": out / "arch.json"}
    write_text_atomic(paths["arch"], arch.model_dump_json(indent=2))
    if space.name == "proxyless-mobile":
        paths["net_config"] = out / "net.config"
        write_text_atomic(paths["net_config"], json.dumps(to_net_config(arch), indent=2))
    standalone = net.standalone(choices).cpu().eval()
    paths["model"] = save_standalone(out / "model.pt", standalone, arch, source=str(ckpt_path),
                                     predicted_ms=summary.get("predicted_ms"), search_config=ckpt["config"])
    if onnx:
        paths["onnx"] = export_onnx(standalone, space.resolution, out / "model.onnx")
        summary["onnx_max_abs_diff"] = check_onnx(standalone, paths["onnx"], space.resolution, atol=atol)
    paths["summary"] = out / "derive.json"
    write_text_atomic(paths["summary"], json.dumps(summary, indent=2))
    paths.update(write_report(Path(ckpt_path).parent, derived_dir=out))  # PNGs beside log.jsonl
    return {"paths": paths, "arch": arch, "summary": summary}
