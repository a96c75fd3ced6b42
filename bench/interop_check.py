"""Check our yaml and net.config against the published tools' own code, on a table profiled here.

For each resolution x width: N random architectures (half with zero layers, half without). Our raw
prediction (search_client's LatencyModel: the sum of the served medians) is compared with
once-for-all's ``ProxylessNASLatencyTable.predict_network_latency_given_config`` reading our yaml export
and our ``net.config``; each net.config is rebuilt with ProxylessNAS's ``ProxylessNASNets.build_from_config``
(released ``proxyless_nas`` and ``search`` versions), given our net's weights in order, and its output
compared with ours. Then the net.config round trip (export -> import) for six widths at several
resolutions.

Their code is loaded from checkouts you give (nothing is downloaded)::

    git clone https://github.com/mit-han-lab/once-for-all /tmp/ofa
    git clone https://github.com/mit-han-lab/proxylessnas /tmp/pnas
    profiler-service profile --space proxyless-mobile --resolution 224 --db sqlite:///t.db   # and 160, widths
    .venv/bin/python bench/interop_check.py --db sqlite:///t.db --ofa /tmp/ofa --proxylessnas /tmp/pnas
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import random
import sys
import tempfile
import types
from pathlib import Path

import torch
import yaml

from profiler_service.db.migrate import init_db
from profiler_service.services import tables, yaml_io
from profiler_service.settings import Settings
from search_client.latency.model import LatencyModel
from shared.arch import build_net, from_net_config, make_arch, to_net_config
from shared.spaces import get_space

ROUND_TRIP_WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
ROUND_TRIP_RESOLUTIONS = (224, 192, 160, 128, 96)


def load_ofa_table(ofa_dir: str):
    """once-for-all's ProxylessNASLatencyTable class, imported alone from a checkout."""
    # ofa.utils pulls in the training stack; the table module only imports three names from it.
    fake = types.ModuleType("ofa.utils")
    fake.download_url, fake.make_divisible, fake.MyNetwork = None, None, object
    sys.modules.setdefault("ofa", types.ModuleType("ofa"))
    sys.modules["ofa.utils"] = fake
    path = Path(ofa_dir) / "ofa/nas/efficiency_predictor/latency_lookup_table.py"
    spec = importlib.util.spec_from_file_location("ofa_latency_lookup_table", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    # It calls yaml.load(fp), written for PyYAML 5 (FullLoader by default); PyYAML 6 wants the Loader named.
    mod.yaml = types.SimpleNamespace(load=lambda fp: yaml.load(fp, Loader=yaml.FullLoader))
    return mod.ProxylessNASLatencyTable


def load_pnas_builders(pnas_dir: str) -> dict:
    """ProxylessNASNets of the released package (proxyless_nas/) and of the search code (search/)."""
    out = {}
    sys.path.insert(0, pnas_dir)
    from proxyless_nas.nas_modules import ProxylessNASNets as released

    out["proxyless_nas"] = released
    sys.path.insert(0, str(Path(pnas_dir) / "search"))
    from models.normal_nets.proxyless_nets import ProxylessNASNets as search

    out["search"] = search
    return out


def random_choices(space, rng: random.Random, zeros: bool) -> list[str]:
    while True:
        choices = [rng.choice([c for c in layer.candidates if zeros or c != "zero"]) for layer in space.layers]
        if not zeros or "zero" in choices:
            return choices


def same_net_output(ours: torch.nn.Module, theirs: torch.nn.Module, res: int) -> float:
    """Copy our convs, BNs and linears into theirs in network order, per type (their ConvLayer registers its
    BN before its conv); max |output difference|, inf when the layers do not match one for one."""
    for kind in (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.Linear):
        a = [m for m in ours.modules() if isinstance(m, kind)]
        b = [m for m in theirs.modules() if isinstance(m, kind)]
        if [tuple(m.weight.shape) for m in a] != [tuple(m.weight.shape) for m in b]:
            return float("inf")
        for m_a, m_b in zip(a, b, strict=True):
            m_b.load_state_dict(m_a.state_dict())
            if kind is torch.nn.Conv2d and (m_a.stride, m_a.padding, m_a.groups) != (m_b.stride, m_b.padding,
                                                                                      m_b.groups):
                return float("inf")
    x = torch.randn(1, 3, res, res)
    with torch.no_grad():
        return float((ours.eval()(x) - theirs.eval()(x)).abs().max())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True, help="database URL holding the profiled table")
    p.add_argument("--table", help="table id (default: the one table with the most entries)")
    p.add_argument("--resolutions", type=int, nargs="+", default=[224, 160])
    p.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.75])
    p.add_argument("--n", type=int, default=20, help="architectures per resolution x width")
    p.add_argument("--round-trip-n", type=int, default=20, help="architectures per width x resolution")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ofa", required=True, help="a once-for-all checkout")
    p.add_argument("--proxylessnas", required=True, help="a proxylessnas checkout")
    args = p.parse_args()
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)

    db = init_db(Settings(database_url=args.db))
    with db.session(write=False) as s:
        table_id = args.table or max(tables.list_tables(s), key=lambda t: t.entries).id
        table = tables.get_table(s, table_id)
        table_out, text = tables.table_out(s, table), yaml_io.to_yaml(s, table)
    work = Path(tempfile.mkdtemp(prefix="interop-"))
    yaml_path = work / "table.yaml"
    yaml_path.write_text(text)
    print(f"table {table_id}: {len(table_out.entries)} entries; yaml export {yaml_path}")
    ofa = load_ofa_table(args.ofa)(url=str(yaml_path))
    builders = load_pnas_builders(args.proxylessnas)

    worst_rel, worst_out, n_nets = 0.0, 0.0, 0
    for res in args.resolutions:
        for width in args.widths:
            space = get_space("proxyless-mobile", res, width)
            model = LatencyModel.from_table(table_out, space, use_calibration=False)
            rels, outs, with_zero = [], [], 0
            for i in range(args.n):
                choices = random_choices(space, rng, zeros=i % 2 == 1)
                with_zero += "zero" in choices
                arch = make_arch(space, choices)
                cfg = to_net_config(arch)
                (work / f"net_{res}_{width}_{i}.config").write_text(json.dumps(cfg, indent=1))
                ours = model.predict(choices)
                theirs_ms = ofa.predict_network_latency_given_config(copy.deepcopy(cfg), res)
                rels.append(abs(theirs_ms - ours) / ours)
                net = build_net(arch)
                for m in net.modules():  # non-trivial BN statistics, so a misplaced tensor shows
                    if isinstance(m, torch.nn.BatchNorm2d):
                        m.running_mean.uniform_(-0.1, 0.1)
                        m.running_var.uniform_(0.5, 1.5)
                for build in builders.values():  # build_from_config pops "name" from each layer dict
                    theirs = build.build_from_config(copy.deepcopy(cfg))
                    theirs.set_bn_param(cfg["bn"]["momentum"], cfg["bn"]["eps"])  # as proxyless_base does
                    outs.append(same_net_output(net, theirs, res))
                n_nets += 1
            worst_rel, worst_out = max(worst_rel, *rels), max(worst_out, *outs)
            print(f"res {res} width {width}: {args.n} nets ({with_zero} with zero layers): once-for-all "
                  f"predictor on our yaml + net.config vs our raw prediction: max rel diff {max(rels):.2e} "
                  f"(ours e.g. {ours:.3f} ms, theirs {theirs_ms:.3f} ms); ProxylessNAS build_from_config "
                  f"(2 versions) output vs ours, our weights: max |diff| {max(outs):.2e}")

    exact = total = 0
    for width in ROUND_TRIP_WIDTHS:
        for res in ROUND_TRIP_RESOLUTIONS:
            space = get_space("proxyless-mobile", res, width)
            for i in range(args.round_trip_n):
                arch = make_arch(space, random_choices(space, rng, zeros=i % 2 == 1))
                cfg = json.loads(json.dumps(to_net_config(arch)))
                back = from_net_config(cfg)
                exact += back == arch and back.width_mult == width
                total += 1
    print(f"net.config round trip: {exact}/{total} exact (widths {ROUND_TRIP_WIDTHS}, resolutions "
          f"{ROUND_TRIP_RESOLUTIONS}, {args.round_trip_n} random architectures each)")
    ok = worst_rel <= 1e-6 and worst_out <= 1e-4 and exact == total
    print(f"{'PASS' if ok else 'FAIL'}: {n_nets} nets, max rel diff {worst_rel:.2e} (bar 1e-6), "
          f"max output diff {worst_out:.2e}, round trip {exact}/{total}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
