"""The ProxylessNAS search loop (gradient variant), single process or ``torchrun`` data-parallel.

Warm-up epochs train the weights alone, one random path per step. Search epochs then alternate: a
weight step on a train batch (one path sampled from softmax(alpha), SGD, label smoothing), and after
every ``arch_every``-th weight step one architecture step on a batch of the disjoint valid split (gated
paths, plain CE + latency regulariser + the ``max_ms`` penalty, Adam with betas (0, 0.999), then the
pair rescale in two mode). Under torchrun every rank takes its own train and valid batch of
``batch_size``, gradients of weights and logits are averaged, so the global batch of both steps is
world x batch_size, and the lrs follow the linear rule (x world). Rank 0 alone writes ``config.json``,
``log.jsonl`` (one line per epoch) and ``ckpt.pt`` (every epoch, every ``ckpt_every`` steps, and on
SIGTERM; resumable to the exact step). See ``constraint`` for how ``max_ms`` works.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from search_client.data.datasets import DatasetSplits, FolderOptions, load_dataset
from search_client.data.loading import (
    StreamPosition,
    ValidStream,
    check_workers,
    default_workers,
    full_pass,
    make_loader,
    to_device,
)
from search_client.engine import checkpoint, ddp
from search_client.engine.config import (  # noqa: F401 - re-exported: the search's public names
    RECIPES,
    SearchConfig,
    auto_arch_lr,
    describe,
    planned_arch_steps,
    scaled_lrs,
)
from search_client.engine.loop import cosine_lr, trim_log
from search_client.engine.position import Position, Tally
from search_client.engine.reinforce import RLState, rl_step
from search_client.engine.report import arch_report, evaluate
from search_client.engine.steps import Precision, arch_loss, arch_step, weight_step  # noqa: F401
from search_client.engine.stopping import StopRequest
from search_client.latency.budgets import Limit, TableBudget
from search_client.latency.constraint import check_feasible, fill_ceiling
from search_client.latency.losses import check_target, mul_log_unit
from search_client.latency.model import LatencyModel, calibration_fits
from search_client.supernet.supernet import SuperNet
from shared.files import append_line
from shared.spaces import SearchSpace, get_space

CKPT_KIND = "search"
# fields a resumed run must share with its checkpoint (the rest, e.g. epochs or out, may change)
RESUME_FIXED = ("space", "resolution", "width_mult", "dataset", "batch_size", "seed", "grad_mode",
                "warmup_epochs", "arch_every", "steps_per_epoch", "arch_skip_epochs", "valid_size", "augment")
IN_MEMORY = ("mnist", "digits", "synthetic")  # decoded once, tiny items: workers would only add start-up


def make_space(cfg: SearchConfig, num_classes: int) -> SearchSpace:
    return get_space(cfg.space, cfg.resolution, cfg.width_mult, num_classes)


def latency_model(entries: dict[str, float] | None, space: SearchSpace,
                  calibration: dict | None = None) -> LatencyModel | None:
    if entries is None:
        return None
    cal = None
    if calibration and calibration_fits(calibration, space):  # a calibration of this space and size only
        from shared.calibration import Calibration  # only calibrated tables need it

        cal = Calibration.from_dict(calibration)
    return LatencyModel(entries, space, cal)


def floor_ms(lat: LatencyModel) -> float:
    """The fastest latency the search can reach: every layer at its cheapest candidate."""
    return lat.fixed_ms + sum(float(c.min()) for c in lat.layer_costs)


def check_log_range(lat: LatencyModel, cfg: SearchConfig) -> float | None:
    """mul#log's log unit (ms where the original formula is defined, else us); refuse before training,
    not mid-search, when some architecture of the space is predicted under 1 us."""
    if cfg.target_ms is None or cfg.loss != "mul#log":
        return None
    lo = floor_ms(lat)
    if lo * 1000.0 <= 1.0:
        raise ValueError(f"mul#log takes log(E[LAT]) in microseconds below 1 ms, but this space's fastest net is "
                         f"predicted at {lo:.3g} ms (<= 1 us); use --loss add#linear")
    return mul_log_unit(cfg.target_ms, lo)


def derive_ceiling(cfg: SearchConfig, lat: LatencyModel | None, calibration: dict | None) -> float | None:
    """Up to where the derived net is filled: None without a limit, a table or with fill off."""
    if lat is None or cfg.max_ms is None or cfg.fill <= 0:
        return None
    return fill_ceiling(cfg.max_ms, calibration if lat.calibration is not None else None, cfg.fill_margin)


def resolve_workers(cfg: SearchConfig) -> int:
    if cfg.num_workers is None:
        return 0 if cfg.dataset in IN_MEMORY else default_workers()
    check_workers(cfg.num_workers)
    return cfg.num_workers


def load_splits(cfg: SearchConfig) -> DatasetSplits:
    return load_dataset(cfg.dataset, resolution=cfg.resolution, data_dir=cfg.data_dir, seed=cfg.seed,
                        synthetic_size=cfg.synthetic_size, valid_size=cfg.valid_size,
                        folder=FolderOptions(cfg.val_labels, cfg.mean, cfg.std, cfg.augment))


def _check_resume(ckpt: dict, cfg: SearchConfig, dist: ddp.Dist) -> None:
    saved = SearchConfig.from_dict(ckpt["config"])
    bad = [f"{k}: {getattr(saved, k)!r} != {getattr(cfg, k)!r}" for k in RESUME_FIXED
           if getattr(saved, k) != getattr(cfg, k)]
    if bad:
        raise ValueError("cannot resume with a different setting: " + "; ".join(bad))
    if "valid_position" in ckpt and ckpt.get("world", 1) != dist.world:
        raise ValueError(f"{ckpt.get('world', 1)} process(es) wrote this mid-epoch checkpoint; resume it on as "
                         f"many (not {dist.world}): each one's shard of the epoch is where it stopped")


def _payload(cfg, space, pos: Position, tally: Tally, net, w_opt, a_opt, rep, rngs, lat, table_info,
             calibration, rl, dist, valid: StreamPosition | None) -> dict:
    extra = {"valid_position": asdict(valid), "tally": tally.values()} if valid is not None else {}
    return {"kind": CKPT_KIND, "config": asdict(cfg), "space": space.name, "num_classes": space.num_classes,
            "epoch": pos.epoch, "batch": pos.batch, "step": pos.step, "arch_steps": pos.arch_steps,
            "world": dist.world, "arch": rep, "arch_probs": [p.detach().cpu() for p in net.full_probs()],
            "model": net.state_dict(), "weight_optimizer": w_opt.state_dict(),
            "arch_optimizer": a_opt.state_dict(), "rng": rngs, "table": table_info or {},
            "latency_entries": dict(lat.entries) if lat is not None else None,
            "calibration": calibration, "rl_baseline": rl.baseline, **extra}


def extra_limits(cfg: SearchConfig, space: SearchSpace, lat: LatencyModel | None, budgets: list[TableBudget],
                 device: torch.device) -> list[Limit]:
    """The other tables' limits, each checked as the first table's is: feasible on its own table."""
    if not budgets:
        return []
    if lat is None or cfg.max_ms is None:
        raise ValueError("several tables need a --max-ms for each, the first one's included")
    if cfg.arch_algo != "grad":
        raise ValueError("several tables need --arch-algo grad (each table's limit is a hinge on its own E[LAT])")
    limits = []
    for budget in budgets:
        model = latency_model(budget.entries, space, budget.calibration)
        check_feasible([layer.candidates for layer in space.layers], model.layer_costs, model.predict,
                       budget.max_ms)
        limits.append(Limit(budget.label, model.to(device), budget.max_ms))
    return limits


def _rng_states(gen: torch.Generator, dist: ddp.Dist) -> list:
    rngs = [checkpoint.rng_state(gen)]
    if dist.enabled:  # every rank's stream, so a resumed DDP run continues each one exactly
        rngs = [None] * dist.world
        torch.distributed.all_gather_object(rngs, checkpoint.rng_state(gen))
    return rngs


def search(cfg: SearchConfig, *, entries: dict[str, float] | None = None, calibration: dict | None = None,
           table_info: dict | None = None, splits: DatasetSplits | None = None,
           resume: str | None = None, announce: bool = False, budgets: list[TableBudget] | None = None) -> dict:
    """Run (or continue) a search; returns {"checkpoint", "choices", "predicted_ms", "stopped", ...} on
    every rank. ``announce``: print the resolved configuration (rank 0). ``budgets``: more tables, each
    with its own hard limit, that the derived net must meet as well (latency/budgets.py)."""
    dist = ddp.setup(cfg.device)
    out = Path(cfg.out)
    ckpt = checkpoint.load(resume, CKPT_KIND) if resume else None
    if ckpt is not None:
        _check_resume(ckpt, cfg, dist)
    if cfg.target_ms is not None:
        check_target(cfg.loss, cfg.target_ms)
    if cfg.grad_mode not in ("two", "full", "full_v2"):
        raise ValueError(f"grad_mode must be two, full or full_v2, not {cfg.grad_mode!r}")
    if cfg.arch_algo not in ("grad", "reinforce"):
        raise ValueError(f"arch_algo must be grad or reinforce, not {cfg.arch_algo!r}")
    workers = resolve_workers(cfg)
    precision = Precision(cfg.amp, dist.device)

    splits = splits or load_splits(cfg)
    space = make_space(cfg, splits.num_classes)
    lat = latency_model(entries, space, calibration)
    if (cfg.target_ms is not None or cfg.max_ms is not None) and lat is None:
        raise ValueError("target_ms / max_ms need a latency table")
    log_unit = None
    if lat is not None:
        check_feasible([layer.candidates for layer in space.layers], lat.layer_costs, lat.predict, cfg.max_ms)
        log_unit = check_log_range(lat, cfg)
        lat.to(dist.device)
    ceiling = derive_ceiling(cfg, lat, calibration)
    budgets = list(budgets or [])
    extra = extra_limits(cfg, space, lat, budgets, dist.device)
    channels_last = cfg.channels_last if cfg.channels_last is not None else dist.device.type == "cuda"

    torch.manual_seed(cfg.seed)  # identical init on every rank (then broadcast to make it certain)
    net = SuperNet(space, aligned_init=cfg.aligned_init).to(dist.device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    ddp.broadcast_module(net, dist)
    gen = torch.Generator().manual_seed(cfg.seed)  # path sampling: the same stream on every rank
    lr_base, warmup_lr_base = scaled_lrs(cfg, dist.world)
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=lr_base, momentum=cfg.momentum, nesterov=True,
                            weight_decay=cfg.weight_decay)
    pin = dist.device.type == "cuda"
    train_dl, train_sampler = make_loader(splits.train, batch_size=cfg.batch_size, dist=dist, seed=cfg.seed,
                                          workers=workers, pin_memory=pin)
    valid_workers = -(-workers // cfg.arch_every) if workers else 0  # the valid split is read 1 / arch_every as often
    valid_dl, valid_sampler = make_loader(splits.valid, batch_size=cfg.batch_size, dist=dist, seed=cfg.seed + 1,
                                          workers=valid_workers, pin_memory=pin)
    spe = min(len(train_dl), cfg.steps_per_epoch or len(train_dl))
    arch_lr = cfg.arch_lr if cfg.arch_lr is not None else auto_arch_lr(planned_arch_steps(cfg, spe), cfg.arch_algo)
    a_opt = torch.optim.Adam(net.arch_parameters(), lr=arch_lr, betas=(0.0, 0.999), eps=1e-8, weight_decay=0.0)
    total_epochs = cfg.warmup_epochs + cfg.epochs
    pos, rl = Position(), RLState()
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        w_opt.load_state_dict(ckpt["weight_optimizer"])
        a_opt.load_state_dict(ckpt["arch_optimizer"])
        for g in a_opt.param_groups:  # the state dict carries the old run's lr; this run's setting wins
            g["lr"] = arch_lr
        pos = Position.from_checkpoint(ckpt, spe)
        checkpoint.set_rng_state(ckpt["rng"][min(dist.rank, len(ckpt["rng"]) - 1)], gen)
        rl.baseline = ckpt.get("rl_baseline")
    else:
        torch.manual_seed(cfg.seed + dist.rank)  # per-rank stream for anything else random
    if cfg.compile:
        net.compile_candidates()
    log_path = out / "log.jsonl"
    resolved = {"world": dist.world, "global_batch": dist.world * cfg.batch_size, "lr": lr_base,
                "warmup_lr": warmup_lr_base, "arch_lr": arch_lr, "steps_per_epoch": spe, "workers": workers,
                "valid_workers": valid_workers, "pin_memory": pin, "channels_last": channels_last,
                "device": str(dist.device), "mul_log_unit_ms": log_unit, "mean": splits.mean, "std": splits.std,
                "train_images": len(splits.train), "valid_images": len(splits.valid)}
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        trim_log(log_path, pos.epoch - 1)
        (out / "config.json").write_text(json.dumps({"config": asdict(cfg), "resolved": resolved}, indent=2))
        if announce:
            print("\n".join(["search configuration:", *(f"  {line}" for line in describe(cfg, dist.world)),
                             *(f"  resolved {k}: {v}" for k, v in resolved.items())]), flush=True)

    def save(position: Position, tally: Tally, valid: StreamPosition | None, rep: dict | None = None) -> None:
        rngs = _rng_states(gen, dist)
        if dist.is_main:
            payload = _payload(cfg, space, position, tally, net, w_opt, a_opt,
                               rep or arch_report(net, lat, cfg.max_ms, ceiling), rngs, lat, table_info,
                               calibration, rl, dist, valid)
            checkpoint.save(out / "ckpt.pt", {**payload, "extra_budgets": [b.to_dict() for b in budgets]})
        ddp.barrier(dist)

    end_epoch = total_epochs if cfg.stop_after is None else min(total_epochs, pos.epoch + cfg.stop_after)
    stopped = False
    with StopRequest() as stop:
        for epoch in range(pos.epoch, end_epoch):
            warm = epoch < cfg.warmup_epochs
            first = pos.batch if epoch == pos.epoch else 0
            train_sampler.set_epoch(epoch)
            train_sampler.start = first * cfg.batch_size
            valid_at = pos.valid if first else StreamPosition(epoch)
            valid = ValidStream(valid_dl, valid_sampler, valid_at)
            tally = Tally.from_values(pos.tally if first else None)
            net.train()
            t0, i = time.time(), first
            bar = tqdm(total=spe, initial=first, desc=f"{'warmup' if warm else 'search'} {epoch + 1}/{total_epochs}",
                       disable=not (cfg.progress and dist.is_main), leave=False, dynamic_ncols=True)
            for batch in train_dl:
                if i >= spe:
                    break
                x, y = to_device(batch, dist.device, channels_last=channels_last)  # (B, 3, R, R), (B,)
                if warm:
                    lr = cosine_lr(epoch * spe + i, cfg.warmup_epochs * spe, warmup_lr_base)
                else:
                    lr = cosine_lr((epoch - cfg.warmup_epochs) * spe + i, cfg.epochs * spe, lr_base)
                for g in w_opt.param_groups:
                    g["lr"] = lr
                tally.add(weight_step(net, x, y, w_opt, gen, dist, cfg, precision), len(y))
                pos.step, i = pos.step + 1, i + 1
                if epoch >= cfg.warmup_epochs + cfg.arch_skip_epochs and i % cfg.arch_every == 0:
                    vx, vy = to_device(next(valid), dist.device, channels_last=channels_last)
                    if cfg.arch_algo == "reinforce":
                        rl_step(net, vx, vy, a_opt, lat, gen, dist, cfg, rl)
                    else:
                        arch_step(net, vx, vy, a_opt, lat, gen, dist, cfg, precision, log_unit, extra)
                    pos.arch_steps += 1
                bar.update(1)
                if dist.is_main and cfg.progress and pos.step % cfg.log_every == 0:  # the step's only reads
                    loss_sum, correct, counted, _, steps = tally.values()
                    post = {"loss": f"{loss_sum / max(steps, 1):.3f}", "acc": f"{correct / max(counted, 1):.3f}",
                            "H": f"{net.entropy():.3f}"}
                    if lat is not None:
                        with torch.no_grad():
                            post["E[LAT]"] = f"{float(lat.expected_latency(net.full_probs())):.2f}ms"
                    bar.set_postfix(post, refresh=False)
                budget_spent = cfg.stop_after_steps is not None and pos.step >= cfg.stop_after_steps
                stopped = stop.agreed(dist, pos.step, cfg.log_every) or budget_spent
                if i < spe and (stopped or (cfg.ckpt_every and pos.step % cfg.ckpt_every == 0)):
                    save(Position(epoch, i, pos.step, pos.arch_steps), tally, valid.position)
                if stopped:
                    break
            bar.close()
            train_s = time.time() - t0  # the steps alone, loading included: what throughput is about
            if stopped and i < spe:
                break
            loss_sum, correct, counted, seen, steps = ddp.sum_all(tally.values(), dist)
            train_loss, train_acc = loss_sum / max(steps, 1), correct / max(counted, 1)
            ddp.average_buffers(net, dist)  # BN running stats: the same on every rank before eval and save
            valid_acc = evaluate(net, full_pass(valid_dl, valid_sampler, epoch), dist, cfg.eval_batches,
                                 precision=precision, channels_last=channels_last)
            rep = arch_report(net, lat, cfg.max_ms, ceiling)
            if dist.is_main:
                elapsed = time.time() - t0
                line = {"epoch": epoch, "phase": "warmup" if warm else "search", "step": pos.step,
                        "arch_steps": pos.arch_steps, "lr": lr, "arch_lr": arch_lr, "train_loss": train_loss,
                        "train_acc": train_acc, "valid_acc": valid_acc, "skipped_images": int(seen - counted),
                        **({"rl_reward": rl.last_reward, "rl_baseline": rl.baseline}
                           if cfg.arch_algo == "reinforce" else {}),
                        "time_s": round(elapsed, 3), "train_s": round(train_s, 3),
                        "images_per_s": round((i - first) * dist.world * cfg.batch_size / max(train_s, 1e-9), 2),
                        **rep}
                append_line(log_path, json.dumps(line))  # whole, or not at all and named
                summary = f"epoch {epoch + 1}/{total_epochs} loss {train_loss:.3f} acc {train_acc:.3f} " \
                          f"valid {valid_acc:.3f} H {rep['entropy']:.3f} maxp {rep['max_prob']:.3f}"
                if "expected_ms" in rep:
                    summary += f" E[LAT] {rep['expected_ms']:.2f}ms argmax {rep['predicted_ms']:.2f}ms"
                if seen > counted:
                    summary += f" ({int(seen - counted)} unreadable image(s) skipped)"
                tqdm.write(summary)
            save(Position(epoch, spe, pos.step, pos.arch_steps), tally, None, rep)
            if stopped:
                break

    if cfg.dump_alphas:
        out.mkdir(parents=True, exist_ok=True)
        torch.save([a.detach().cpu() for a in net.arch_parameters()], out / f"rank{dist.rank}_alphas.pt")
    rep = arch_report(net, lat, cfg.max_ms, ceiling)
    ddp.barrier(dist)
    return {"checkpoint": str(out / "ckpt.pt"), "step": pos.step, "arch_steps": pos.arch_steps, "dist": dist,
            "stopped": stopped, "choices": rep.get("projected_choices", rep["choices"]),
            "predicted_ms": rep.get("projected_ms", rep.get("predicted_ms")), "report": rep}
