"""Does the retrain budget tell architectures apart? Seed noise against the spread between nets (issue 8).

Retrains nets of one space from a ``search_outcome`` results file (its searched nets and every
``--every``-th random net by latency) with a given budget at several seeds and prints, per net, the
seeds' accuracies, then: the mean, the within-net seed standard deviation (pooled), the standard
deviation of the nets' seed means, and their ratio to the noise of a seed mean (``between / (within /
sqrt(seeds))``). A ratio near 1 says the ranking of the nets is mostly seed noise.

    .venv/bin/python bench/retrain_noise.py [--results docs/search_outcome.json] [--images 768] [--lr 0.05]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from outcome_report import noise_figures  # noqa: E402
from retrain_pool import Budget, retrain_all  # noqa: E402

from shared.arch import make_arch  # noqa: E402
from shared.spaces import get_space  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="docs/search_outcome.json")
    p.add_argument("--space", default="proxyless-mobile")
    p.add_argument("--every", type=int, default=2, help="keep every n-th random net, by measured latency")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--images", type=int, default=768)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="runs/retrain_noise")
    args = p.parse_args(argv)
    if len(args.seeds) < 2:
        p.error("--seeds: at least two, or there is no seed noise to compare with")
    res = json.loads(Path(args.results).read_text())
    spaces = {s["space"]: s for s in res["spaces"]}
    if args.space not in spaces:
        p.error(f"--space {args.space!r} is not in {args.results} (it has {', '.join(spaces)})")
    sp = spaces[args.space]
    space = get_space(sp["space"], sp["resolution"], 1.0, 10)
    randoms = sorted(sp["randoms"], key=lambda r: r["measured_ms"])[::args.every]
    nets = {r["name"]: r["choices"] for r in [*sp["searched"], *randoms]}
    jobs = [(name, make_arch(space, c).model_dump(), s, f"{args.out}/{name.replace(' ', '_')}/seed{s}")
            for name, c in nets.items() for s in args.seeds]
    budget = Budget(sp["dataset"], args.epochs, args.images or None, args.batch, args.lr)
    print(f"{args.space} @{sp['resolution']}: {len(nets)} nets x seeds {args.seeds}; retrain {args.epochs} epochs "
          f"x {args.images or 'all'} images, batch {args.batch}, lr {args.lr}", flush=True)
    t0 = time.perf_counter()
    acc = retrain_all(jobs, budget, args.workers)
    per_net = {n: [acc[n, s] for s in args.seeds] for n in nets}
    for n, v in per_net.items():
        print(f"  {n:12s} mean {np.mean(v):.4f}  sd {np.std(v, ddof=1):.4f}  " + " / ".join(f"{a:.3f}" for a in v))
    f = noise_figures(per_net)
    print(f"mean {f['mean']:.4f}; seed sd within a net {100 * f['within_sd']:.2f} points; sd of the nets' means "
          f"{100 * f['between_sd']:.2f} points; ratio to a seed mean's noise {f['ratio']:.2f}; "
          f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
