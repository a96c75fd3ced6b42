"""Retrain a derived architecture from scratch (or from inherited weights) and report held-out test
accuracy. Single process; SGD + Nesterov, cosine lr per batch, label smoothing, no weight decay on
BatchNorm (the ProxylessNAS retrain recipe, shortened)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader
from tqdm import tqdm

from search_client.data.datasets import DatasetSplits, FolderOptions, load_dataset
from search_client.engine import checkpoint
from search_client.engine.ddp import pick_device
from search_client.engine.loop import cosine_lr
from shared.arch import Arch, build_net
from shared.files import write_text_atomic

TRAIN_KIND = "train"


@dataclass
class TrainConfig:
    dataset: str = "mnist"
    data_dir: str | None = None
    val_labels: str | None = None  # label file of a flat val/ (ImageNet's)
    synthetic_size: int = 512
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    use_valid: bool = True  # train on train + valid: the valid split only served the arch steps
    seed: int = 0
    out: str = "runs/train"
    init: str | None = None  # standalone checkpoint whose weights to start from (derive's model.pt)
    device: str = "auto"
    num_workers: int = 0
    progress: bool = True


def param_groups(net: nn.Module, weight_decay: float) -> list[dict]:
    """No decay on BatchNorm (and biases): shrinking BN scales only fights the following conv."""
    decay, no_decay = [], []
    for m in net.modules():
        for name, p in m.named_parameters(recurse=False):
            bn = isinstance(m, nn.modules.batchnorm._BatchNorm)
            (no_decay if bn or name == "bias" else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def accuracy(net: nn.Module, ds, batch_size: int, device: torch.device) -> float:
    net.eval()
    correct = total = 0
    for x, y in DataLoader(ds, batch_size=batch_size):
        x, y = x.to(device), y.to(device)
        correct += int((net(x).argmax(1) == y).sum())  # (B, classes) -> (B,)
        total += len(y)
    return correct / max(total, 1)


def train_arch(arch: Arch, cfg: TrainConfig | None = None, *, splits: DatasetSplits | None = None,
               **overrides) -> dict:
    """Train ``arch``; returns {"test_acc", "checkpoint", "history"}.

    ``train_arch(arch, dataset="digits", epochs=3)`` works too: keywords override ``TrainConfig`` fields.
    """
    cfg = dataclasses.replace(cfg or TrainConfig(), **overrides)
    device = pick_device(cfg.device)
    splits = splits or load_dataset(cfg.dataset, resolution=arch.resolution, data_dir=cfg.data_dir,
                                    seed=cfg.seed, synthetic_size=cfg.synthetic_size,
                                    folder=FolderOptions(val_labels=cfg.val_labels))
    if splits.num_classes != arch.num_classes:
        raise ValueError(f"architecture has {arch.num_classes} classes, dataset {splits.name} has "
                         f"{splits.num_classes}")
    torch.manual_seed(cfg.seed)
    net = build_net(arch)
    if cfg.init:
        from search_client.engine.derive import load_standalone

        init_net, init_arch, _ = load_standalone(cfg.init)
        if init_arch.choices != arch.choices:
            raise ValueError(f"{cfg.init} holds a different architecture")
        net.load_state_dict(init_net.state_dict(), strict=True)
    net.to(device)
    train_ds = ConcatDataset([splits.train, splits.valid]) if cfg.use_valid else splits.train
    gen = torch.Generator().manual_seed(cfg.seed)
    dl = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, drop_last=True, generator=gen,
                    num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0,
                    pin_memory=device.type == "cuda")
    if len(dl) == 0:
        raise ValueError(f"{len(train_ds)} training examples give no batch of {cfg.batch_size}")
    opt = torch.optim.SGD(param_groups(net, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum,
                          nesterov=True)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    total, step, history = cfg.epochs * len(dl), 0, []
    for epoch in range(cfg.epochs):
        net.train()
        t0, loss_sum, acc_sum = time.time(), 0.0, 0.0
        bar = tqdm(dl, desc=f"train {epoch + 1}/{cfg.epochs}", disable=not cfg.progress, leave=False)
        for x, y in bar:
            x, y = x.to(device), y.to(device)  # (B, 3, R, R), (B,)
            for g in opt.param_groups:
                g["lr"] = cosine_lr(step, total, cfg.lr)
            logits = net(x)  # (B, classes)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item()
            acc_sum += (logits.argmax(1) == y).float().mean().item()
            bar.set_postfix(loss=f"{loss_sum / (bar.n + 1):.3f}", acc=f"{acc_sum / (bar.n + 1):.3f}",
                            refresh=False)
        history.append({"epoch": epoch, "train_loss": loss_sum / len(dl), "train_acc": acc_sum / len(dl),
                        "time_s": round(time.time() - t0, 3)})
    test_acc = accuracy(net, splits.test, cfg.batch_size, device)
    ckpt_path = checkpoint.save(out / "model.pt", {
        "kind": TRAIN_KIND, "arch": arch.model_dump(), "model": net.cpu().state_dict(),
        "config": asdict(cfg), "test_acc": test_acc, "epochs": cfg.epochs, "step": step,
        "history": history})
    write_text_atomic(out / "train.json", json.dumps({"test_acc": test_acc, "history": history,
                                                      "arch": arch.choices}, indent=2))
    return {"test_acc": test_acc, "checkpoint": os.fspath(ckpt_path), "history": history}
