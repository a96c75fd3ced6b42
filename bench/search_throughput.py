"""Is the search fed fast enough? Loader, in-memory search and loader-fed search on real-size JPEGs.

Builds (once, cached) a folder of a few thousand JPEGs the size of ImageNet's (about 430 x 360 px, ~70 KB),
then per resolution (224 and 128 px) prints images/s of:

- the loader alone (decode + the official train transform, in DataLoader workers) per worker count;
- the search with its data in memory (the batches decoded and transformed beforehand);
- the search fed by the loader, with the workers the machine can spare (its CPUs less the training
  loop's threads);

and the ratios: fed / in-memory (goal >= 0.9), and the supernet's step over a standalone net's step
on the same sampled paths (goal <= 1.3). The search is ``engine.search.search`` itself: one weights-only
epoch, then one epoch with an architecture step after every weight step; its figure is the second
epoch's images/s. No latency table: the arch step's cost does not depend on the table's numbers. The
architecture lr is 1e-6 so that every run samples the same paths (see ``run_resolution``).

    .venv/bin/python bench/search_throughput.py [--md docs/results/search_throughput.md]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from search_client.data.datasets import IMAGENET_MEAN, IMAGENET_STD, DatasetSplits, FolderOptions, load_dataset
from search_client.data.loading import cpu_count, default_workers
from search_client.engine.config import SearchConfig
from search_client.engine.search import search
from search_client.supernet.supernet import SuperNet
from shared.spaces import get_space

CLASSES = 10
FED_GOAL, STEP_GOAL = 0.9, 1.3


def build_folder(root: Path, count: int, seed: int = 0) -> Path:
    """``count`` JPEGs in CLASSES folders: smooth colour fields + noise + shapes, ImageNet-like sizes."""
    stamp = root / ".complete"
    if stamp.exists() and stamp.read_text().strip() == str(count):
        return root
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for i in range(count):
        w, h = int(rng.integers(360, 500)), int(rng.integers(300, 420))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = rng.uniform(40, 215, 3)
        field = base + 40 * np.sin(xx[..., None] / rng.uniform(20, 90) + rng.uniform(0, 6, 3)) \
            * np.cos(yy[..., None] / rng.uniform(20, 90))
        field += rng.normal(0, 18, (h, w, 3))  # texture: a JPEG of this size lands near ImageNet's ~110 KB
        folder = root / f"class{i % CLASSES:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(field, 0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)
    stamp.write_text(str(count))
    size = sum(p.stat().st_size for p in root.rglob("*.jpg"))
    print(f"built {count} JPEGs in {root} ({size / 2**20:.0f} MiB) in {time.perf_counter() - t0:.0f} s", flush=True)
    return root


def loader_rate(ds: Dataset, batch: int, workers: int, batches: int) -> float:
    """Images/s of the loader alone after its first batch (worker start-up excluded)."""
    keys = [(i, i) for i in range(len(ds))] if getattr(ds, "random_transform", False) else list(range(len(ds)))
    dl = DataLoader(ds, batch_size=batch, sampler=keys, num_workers=workers, drop_last=True)
    it = iter(dl)
    next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = batches * batch / (time.perf_counter() - t0)
    del it
    return rate


class Preloaded(Dataset):
    """Items decoded and transformed once: the search's data in memory."""

    def __init__(self, ds: Dataset, count: int):
        keys = [(i, i) for i in range(count)] if getattr(ds, "random_transform", False) else range(count)
        self.items = [ds[k] for k in keys]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def search_rate(cfg: SearchConfig, splits: DatasetSplits) -> float:
    search(cfg, splits=splits)
    last = json.loads((Path(cfg.out) / "log.jsonl").read_text().splitlines()[-1])
    return float(last["images_per_s"])


def step_ratio(resolution: int, batch: int, steps: int) -> tuple[float, float, float]:
    """(supernet weight step s, standalone step s, ratio) over the same ``steps`` sampled paths."""
    import torch.nn.functional as F

    space = get_space("proxyless-mobile", resolution, 1.0, CLASSES)
    torch.manual_seed(0)
    net = SuperNet(space)
    x, y = torch.randn(batch, 3, resolution, resolution), torch.randint(0, CLASSES, (batch,))
    opt = torch.optim.SGD(net.weight_parameters(), lr=0.01, momentum=0.9, nesterov=True)
    gen = torch.Generator().manual_seed(0)
    super_t, alone_t = [], []
    for k in range(steps + 1):
        net.sample("single", gen)
        alone = net.standalone(net.sampled_choices())
        alone_opt = torch.optim.SGD(alone.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        for model, optimizer, times in ((net, opt, super_t), (alone, alone_opt, alone_t)):
            t0 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            if k:  # the first of each warms the allocator
                times.append(time.perf_counter() - t0)
    s, a = statistics.median(super_t), statistics.median(alone_t)
    return s, a, s / a


def run_resolution(args, root: Path, resolution: int, threads: int, spare: int, out: Path) -> dict:
    torch.set_num_threads(threads)
    opts = FolderOptions(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    splits = load_dataset("imagefolder", resolution=resolution, data_dir=str(root), valid_size=args.batch * 4,
                          folder=opts)
    row: dict = {"resolution": resolution, "batch": args.batch, "threads": threads, "spare_workers": spare}
    row["loader"] = {w: round(loader_rate(splits.train, args.batch, w, args.loader_batches), 1)
                     for w in args.worker_counts}
    print("  loader alone: " + ", ".join(f"{w} worker(s) {r:.0f} img/s" for w, r in row["loader"].items()),
          flush=True)
    # arch lr 1e-6: the logits barely move, so every run draws the same paths from the same generator. A
    # step's cost depends on its path (3x3 MBConv3 vs 7x7 MBConv6 is ~2x), and with logits moved by each
    # run's own data, runs would time different nets rather than the same work fed two ways.
    base = dict(dataset="imagefolder", data_dir=str(root), resolution=resolution, batch_size=args.batch,
                warmup_epochs=0, epochs=2, arch_skip_epochs=1, arch_every=1, steps_per_epoch=args.steps, arch_lr=1e-6,
                eval_batches=1, valid_size=args.batch * 4, mean=IMAGENET_MEAN, std=IMAGENET_STD, progress=False,
                amp=args.amp)
    n = args.batch * args.steps
    memory = DatasetSplits(Preloaded(splits.train, n), Preloaded(splits.valid, args.batch * 4),
                           Preloaded(splits.test, args.batch), splits.num_classes, "memory")
    # in-memory and fed runs interleaved, the best of each kept: on a shared machine a run is only ever
    # slowed down by the others' load, so the best of a few is the closest to the machine's own speed
    mem, fed = [], []
    for k in range(args.repeats):
        mem.append(search_rate(SearchConfig(**base, num_workers=0, out=str(out / f"mem{resolution}_{k}")), memory))
        fed.append(search_rate(SearchConfig(**base, num_workers=spare, out=str(out / f"fed{resolution}_{k}")),
                               splits))
    row["in_memory_runs"], row["fed_runs"] = mem, fed
    row["in_memory"], row["fed"] = max(mem), max(fed)
    row["fed_ratio"] = round(row["fed"] / row["in_memory"], 3)
    s, a, ratio = step_ratio(resolution, args.batch, args.ratio_steps)
    row.update(supernet_step_s=round(s, 4), standalone_step_s=round(a, 4), step_ratio=round(ratio, 3))
    # a whole search step (weight step + architecture step, from the in-memory run) over two standalone
    # steps: the definition of bench/supernet_memory.py's gated / standalone time
    row["search_step_ratio"] = round(args.batch / row["in_memory"] / (2 * a), 3)
    print(f"  search, data in memory: {row['in_memory']:.2f} img/s (best of {mem}); fed by the loader ({spare} "
          f"worker(s)): {row['fed']:.2f} img/s (best of {fed}) -> fed / in-memory {row['fed_ratio']:.2f} "
          f"(goal >= {FED_GOAL})", flush=True)
    print(f"  supernet weight step {s:.3f} s vs standalone net {a:.3f} s on the same paths -> {ratio:.2f}x "
          f"(goal <= {STEP_GOAL}); search step (weight + arch) vs two standalone steps "
          f"{row['search_step_ratio']:.2f}x", flush=True)
    return row


def markdown(rows: list[dict], args, cpus: int) -> str:
    lines = ["# Search throughput", "",
             "Regenerated whole by `make bench-throughput` (`python bench/search_throughput.py --md "
             "docs/results/search_throughput.md`). The search is `engine.search.search` itself on a folder of "
             f"{args.images} generated JPEGs of ImageNet's size (360-500 x 300-420 px, {args.kb:.0f} KB on "
             "average), decoded and "
             "augmented with the official train transform in DataLoader workers; batch "
             f"{args.batch}, amp {args.amp}, {args.steps} steps an epoch, the second epoch (an architecture step "
             "after every weight step) timed.", "",
             f"Machine: {cpus} CPU(s) for this process, torch {torch.__version__}, Python "
             f"{platform.python_version()}. **No GPU figures: no GPU machine was available for this run**, so "
             "the CUDA-only paths (pin_memory, fp16 with loss scaling, NCCL under torchrun) have not been run and "
             "no GPU speed is shown.", "",
             "| resolution | torch threads | loader alone, img/s by workers | search in memory, img/s | "
             "search fed, img/s (workers) | fed / in-memory (goal >= 0.9) | supernet / standalone step "
             "(goal <= 1.3) | search step / two standalone steps |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        loader = ", ".join(f"{w}: {v:.0f}" for w, v in r["loader"].items())
        fed_ok = "met" if r["fed_ratio"] >= FED_GOAL else "NOT met"
        step_ok = "met" if r["step_ratio"] <= STEP_GOAL else "NOT met"
        lines.append(f"| {r['resolution']} px | {r['threads']} | {loader} | {r['in_memory']:.1f} | {r['fed']:.1f} "
                     f"({r['spare_workers']}) | {r['fed_ratio']:.2f} {fed_ok} | {r['step_ratio']:.2f} {step_ok} | "
                     f"{r['search_step_ratio']:.2f} |")
    lines += ["", f"Search figures are the best of {args.repeats} runs each, in-memory and fed interleaved (the "
              "machine is shared: a run is only ever slowed by the others' load). The supernet / standalone ratio "
              "times one weight step of the supernet (one sampled path) against a training step of the standalone "
              f"net of that same path, median over {args.ratio_steps} paths, batch {args.batch}, random data. The "
              "last column is a whole search step (weight step + architecture step in two mode, from the in-memory "
              "run) over two standalone steps, the definition of `bench/supernet_memory.py`'s gated / standalone "
              "time (0.77 there, on the heaviest path at batch 16).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cpus = cpu_count()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000, help="JPEGs in the generated folder (~70 KB each)")
    p.add_argument("--cache", default="var/search_throughput_images", help="where the folder is built, once")
    p.add_argument("--resolutions", type=int, nargs="+", default=[224, 128])
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--steps", type=int, default=5, help="steps of each timed search epoch")
    p.add_argument("--repeats", type=int, default=2, help="in-memory and fed runs each, interleaved; best kept")
    p.add_argument("--ratio-steps", type=int, default=4)
    p.add_argument("--loader-batches", type=int, default=4)
    p.add_argument("--worker-counts", type=int, nargs="+", default=sorted({0, 1, min(2, cpus), default_workers()}))
    p.add_argument("--spare", type=int, default=default_workers(),
                   help="workers feeding the search (default: the CPUs less one, at most 8)")
    p.add_argument("--amp", default="off", choices=["off", "bf16"])
    p.add_argument("--out", default="var/search_throughput_runs")
    p.add_argument("--md", help="write the results page here (e.g. docs/results/search_throughput.md)")
    args = p.parse_args(argv)
    root = build_folder(Path(args.cache), args.images)
    files = list(root.rglob("*.jpg"))
    args.kb = sum(f.stat().st_size for f in files) / max(len(files), 1) / 1024
    threads = max(1, cpus - args.spare)
    rows = []
    for resolution in args.resolutions:
        print(f"== {resolution} px, batch {args.batch}, {threads} torch thread(s), {args.spare} spare worker(s)",
              flush=True)
        rows.append(run_resolution(args, root, resolution, threads, args.spare, Path(args.out)))
    ok = all(r["fed_ratio"] >= FED_GOAL and r["step_ratio"] <= STEP_GOAL for r in rows)
    ratios = "; ".join(f"{r['resolution']} px fed/in-memory {r['fed_ratio']:.2f}, supernet/standalone "
                       f"{r['step_ratio']:.2f}" for r in rows)
    print(f"ratios: {ratios} -> {'goals met' if ok else 'goal missed'}")
    if args.md:
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(markdown(rows, args, cpus))
        print(f"wrote {args.md}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
