"""Retrain many architectures with one fixed budget, in parallel worker processes (one torch thread each).

Every net gets the same budget: ``images`` training images (a seeded draw from the train + valid pool,
the same draw for every net at one seed), ``epochs`` passes, the same batch size, lr schedule and seed;
accuracy is measured on the dataset's held-out test split, which no search ever sees.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass

_SPLITS: dict = {}  # per worker: (dataset, resolution, seed, images) -> DatasetSplits


@dataclass(frozen=True)
class Budget:
    dataset: str
    epochs: int
    images: int | None  # None: the whole train + valid pool
    batch_size: int = 32
    lr: float = 0.05


def _splits(budget: Budget, resolution: int, seed: int):
    import torch
    from torch.utils.data import ConcatDataset, Subset

    from search_client.data.datasets import DatasetSplits, load_dataset

    key = (budget.dataset, resolution, seed, budget.images)
    if key not in _SPLITS:
        s = load_dataset(budget.dataset, resolution=resolution, seed=seed)
        pool = ConcatDataset([s.train, s.valid])
        n = len(pool) if budget.images is None else min(budget.images, len(pool))
        idx = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:n].tolist()
        _SPLITS[key] = DatasetSplits(Subset(pool, idx), Subset(pool, []), s.test, s.num_classes, s.name)
    return _SPLITS[key]


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def train_one(arch: dict, seed: int, budget: dict, out: str) -> float:
    """Held-out test accuracy of ``arch`` (an Arch dict) after the budget's training at ``seed``."""
    from search_client.engine.train import TrainConfig, train_arch
    from shared.arch import Arch

    b = Budget(**budget)
    a = Arch.model_validate(arch)
    cfg = TrainConfig(dataset=b.dataset, epochs=b.epochs, batch_size=b.batch_size, lr=b.lr, seed=seed,
                      use_valid=False, out=out, device="cpu", progress=False)
    return float(train_arch(a, cfg, splits=_splits(b, a.resolution, seed))["test_acc"])


def retrain_all(jobs: Sequence[tuple[str, dict, int, str]], budget: Budget, workers: int,
                progress: Callable[[str, int, float], None] = lambda name, seed, acc: None
                ) -> dict[tuple[str, int], float]:
    """jobs: (name, arch dict, seed, out dir) -> {(name, seed): test accuracy}."""
    out: dict[tuple[str, int], float] = {}
    if workers <= 1:
        _init_worker()
        for name, arch, seed, d in jobs:
            out[name, seed] = train_one(arch, seed, asdict(budget), d)
            progress(name, seed, out[name, seed])
        return out
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker) as ex:
        futs = {ex.submit(train_one, arch, seed, asdict(budget), d): (name, seed) for name, arch, seed, d in jobs}
        for f in as_completed(futs):
            name, seed = futs[f]
            out[name, seed] = f.result()
            progress(name, seed, out[name, seed])
    return out
