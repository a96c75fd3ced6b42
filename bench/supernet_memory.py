"""Peak memory and step time of the gated supernet vs a standalone net vs a DARTS-style mixed op.

proxyless-mobile at 224 px. Each case runs in a fresh subprocess (peak RSS, ``ru_maxrss``, is per
process and only grows), warm-up step first, then ``--steps`` timed steps:

- ``standalone``: the plain net with 7x7_MBConv6 on every layer (the largest single path), SGD steps.
- ``gated``: the supernet; a weight step on the 7x7_MBConv6 path (the worst single path) then an
  architecture step in ``two`` mode, with the logits biased so the pair is mostly the two heaviest
  candidates (the worst realistic pair).
- ``darts``: every candidate runs and the layer outputs the softmax-weighted sum (DARTS, first order):
  a weight step and a logit step, each keeping the activations of all N candidates for backward.

Run: ``.venv/bin/python bench/supernet_memory.py [--batch 16] [--steps 2] [--threads 1]``.
Targets: gated / standalone <= 1.3 (peak RSS), darts / gated >= 3.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIG = "7x7_MBConv6"
SECOND = "5x5_MBConv6"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def run_case(case: str, batch: int, steps: int, resolution: int) -> dict:
    import torch
    import torch.nn.functional as F
    from torch import nn

    from search_client.supernet.supernet import SuperNet
    from shared.arch import Net
    from shared.spaces import get_space

    torch.manual_seed(0)
    space = get_space("proxyless-mobile", resolution, 1.0, 1000)
    x = torch.randn(batch, 3, resolution, resolution)
    y = torch.randint(0, 1000, (batch,))
    gen = torch.Generator().manual_seed(0)

    if case == "standalone":
        net = Net(list(space.prefix), space.layer_specs([BIG] * len(space.layers)), list(space.suffix))
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

        def step() -> None:  # two training steps: the same work count as gated's weight + arch step
            for _ in range(2):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(net(x), y).backward()
                opt.step()
    else:
        net = SuperNet(space)
        w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.01, momentum=0.9)
        a_opt = torch.optim.Adam(net.arch_parameters(), lr=1e-3, betas=(0.0, 0.999))
        with torch.no_grad():
            for m in net.mixed_ops:  # the heaviest pair dominates the arch-step sampling
                m.alpha.fill_(-5.0)
                m.alpha[m.names.index(BIG)] = 3.0
                m.alpha[m.names.index(SECOND)] = 2.0

        if case == "gated":
            def step() -> None:
                net.set_choices([BIG] * len(space.layers))  # weight step on the worst single path
                w_opt.zero_grad(set_to_none=True)
                F.cross_entropy(net(x), y).backward()
                w_opt.step()
                net.sample("two", gen)  # arch step
                loss = F.cross_entropy(net(x), y)
                alphas = net.arch_parameters()
                for a, g in zip(alphas, torch.autograd.grad(loss, alphas), strict=True):
                    a.grad = g
                a_opt.step()
                net.rescale_arch_()
        elif case == "darts":
            def darts_layer(layer, h):  # (B, Cin, H, W) -> (B, Cout, H', W'): all paths, weighted
                p = torch.softmax(layer.mixed.alpha, 0)
                out = sum(p[i] * layer.mixed.ops[n](h) for i, n in enumerate(layer.mixed.names) if n != "zero")
                return h + out if layer.shortcut else out

            def forward(inp):
                h = net.prefix(inp)
                for layer in net.layers:
                    h = darts_layer(layer, h)
                return net.suffix(h)

            def step() -> None:  # first-order DARTS: a weight step, then a logit step, all paths each
                w_opt.zero_grad(set_to_none=True)
                F.cross_entropy(forward(x), y).backward()
                w_opt.step()
                alphas = net.arch_parameters()
                grads = torch.autograd.grad(F.cross_entropy(forward(x), y), alphas)
                for a, g in zip(alphas, grads, strict=True):
                    a.grad = g
                a_opt.step()
        else:
            raise SystemExit(f"unknown case {case}")

    params = sum(p.numel() for p in net.parameters())
    assert isinstance(net, nn.Module)
    net.train()
    before = rss_mb()
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        step()
        if i:  # the first step warms allocator and kernels
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    return {"case": case, "params_m": params / 1e6, "rss_before_mb": before, "peak_rss_mb": peak,
            "step_s": statistics.median(times), "batch": batch, "resolution": resolution}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--md", help="write the results page here (whole)")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # the child's entry point
    args = ap.parse_args()
    if args.case:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(run_case(args.case, args.batch, args.steps, args.resolution)))
        return
    rows = {}
    for case in ("standalone", "gated", "darts"):
        cmd = [sys.executable, __file__, "--case", case, "--batch", str(args.batch), "--steps", str(args.steps),
               "--resolution", str(args.resolution), "--threads", str(args.threads)]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"{case} failed:\n{proc.stderr[-2000:]}")
        rows[case] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"proxyless-mobile {args.resolution}px, batch {args.batch}, {args.threads} thread(s), "
          f"median of {args.steps} step(s) (weight + arch step; standalone: 2 SGD steps)")
    print(f"{'case':12s} {'params':>9s} {'RSS before':>11s} {'peak RSS':>10s} {'step':>9s}")
    for r in rows.values():
        print(f"{r['case']:12s} {r['params_m']:8.2f}M {r['rss_before_mb']:9.0f}MB {r['peak_rss_mb']:8.0f}MB "
              f"{r['step_s']:8.2f}s")
    s, g, d = rows["standalone"], rows["gated"], rows["darts"]
    print(f"peak RSS  gated/standalone {g['peak_rss_mb'] / s['peak_rss_mb']:.2f} (target <= 1.3)   "
          f"darts/gated {d['peak_rss_mb'] / g['peak_rss_mb']:.2f} (target >= 3)")
    gs = g["peak_rss_mb"] - g["rss_before_mb"]
    ss = s["peak_rss_mb"] - s["rss_before_mb"]
    ds = d["peak_rss_mb"] - d["rss_before_mb"]
    print(f"step-only growth (peak - before): standalone {ss:.0f}MB, gated {gs:.0f}MB, darts {ds:.0f}MB; "
          f"darts/gated {ds / gs:.2f}")
    print(f"step time gated/standalone {g['step_s'] / s['step_s']:.2f}, darts/gated {d['step_s'] / g['step_s']:.2f}")
    if args.md:
        write_page(Path(args.md), rows, args)


def write_page(page: Path, rows: dict, args) -> None:
    """The results page, whole: the three cases and the two ratios the design rests on."""
    s, g, d = rows["standalone"], rows["gated"], rows["darts"]
    lines = ["# Supernet memory", "",
             "Why binary gates: a gated supernet trains in about the memory of one network, while a DARTS-style",
             "mixed op keeps every candidate's activations. proxyless-mobile at "
             f"{args.resolution} px, batch {args.batch}, {args.threads} thread(s); each case in a fresh process, "
             "peak RSS after a warm-up step and the timed steps.", "",
             "Regenerate: `make bench-memory`.", "",
             "| case | parameters | RSS before | peak RSS | step |", "|---|---|---|---|---|",
             *(f"| {r['case']} | {r['params_m']:.2f} M | {r['rss_before_mb']:.0f} MB | {r['peak_rss_mb']:.0f} MB | "
               f"{r['step_s']:.2f} s |" for r in rows.values()), "",
             f"- peak RSS, gated / standalone: **{g['peak_rss_mb'] / s['peak_rss_mb']:.2f}** (target <= 1.3)",
             f"- peak RSS, DARTS-style / gated: **{d['peak_rss_mb'] / g['peak_rss_mb']:.2f}** (target >= 3)",
             f"- step time, gated / standalone: {g['step_s'] / s['step_s']:.2f} (a weight step and an architecture "
             "step against two SGD steps)", ""]
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("\n".join(lines))
    print(f"wrote {page}")


if __name__ == "__main__":
    main()
