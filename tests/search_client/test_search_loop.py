"""The search loop end to end on digits at 32 px with a fake-but-complete table: the latency target
steers the result, checkpoints resume exactly, the log and derive outputs are complete."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

from search_client.engine import checkpoint
from search_client.engine.derive import derive, load_standalone
from search_client.engine.search import auto_arch_lr, search


def read_log(out: str) -> list[dict]:
    with open(f"{out}/log.jsonl") as f:
        return [json.loads(line) for line in f]


def test_tight_target_gives_a_faster_architecture_than_a_loose_one(tiny_config, digits, entries, tmp_path):
    # add#linear: the latency gradient scales with 1/T, so a huge T is "no latency pressure"
    common = dict(warmup_epochs=0, epochs=2, steps_per_epoch=5, arch_every=1, arch_lr=0.3, loss="add#linear")
    tight = search(tiny_config(target_ms=5.0, out=str(tmp_path / "tight"), **common), entries=entries,
                   splits=digits)
    loose = search(tiny_config(target_ms=1e6, out=str(tmp_path / "loose"), **common), entries=entries,
                   splits=digits)
    assert tight["predicted_ms"] < loose["predicted_ms"]
    assert tight["report"]["expected_ms"] < loose["report"]["expected_ms"]
    log = read_log(str(tmp_path / "tight"))
    assert [r["epoch"] for r in log] == [0, 1]
    need = {"epoch", "train_loss", "train_acc", "valid_acc", "expected_ms", "predicted_ms", "entropy",
            "probs", "choices"}
    assert need <= set(log[-1])
    assert len(log[-1]["probs"]) == 21 and len(log[-1]["choices"]) == 21


def test_default_mul_log_search_and_derive_outputs(tiny_config, digits, entries, tmp_path):
    res = search(tiny_config(target_ms=30.0, max_ms=40.0), entries=entries, splits=digits)
    assert res["predicted_ms"] <= 40.0
    out = derive(res["checkpoint"], tmp_path / "derived")
    paths, summary = out["paths"], out["summary"]
    assert {"arch", "net_config", "model", "onnx", "summary"} <= set(paths)
    assert summary["predicted_ms"] <= 40.0 and summary["onnx_max_abs_diff"] <= 1e-4
    arch = json.loads(paths["arch"].read_text())
    assert arch["space"] == "proxyless-mobile" and len(arch["choices"]) == 21
    assert json.loads(paths["net_config"].read_text())["name"] == "ProxylessNASNets"
    onnx.checker.check_model(str(paths["onnx"]))
    net, arch2, ckpt = load_standalone(paths["model"])  # self-describing: rebuilds without the search
    assert arch2.choices == summary["choices"] and ckpt["predicted_ms"] == summary["predicted_ms"]


def test_resume_continues_at_the_saved_step_and_matches_an_uninterrupted_run(tiny_config, digits, entries,
                                                                              tmp_path):
    kw = dict(target_ms=30.0, steps_per_epoch=3, arch_every=2)
    full = search(tiny_config(epochs=2, out=str(tmp_path / "full"), **kw), entries=entries, splits=digits)
    # the same run, stopped after two epochs (as a time limit or a crash would), then resumed
    first = search(tiny_config(epochs=2, stop_after=2, out=str(tmp_path / "part"), **kw), entries=entries,
                   splits=digits)
    saved = checkpoint.load(first["checkpoint"], "search")
    assert (saved["epoch"], saved["step"]) == (1, 6)  # warm-up epoch + one search epoch, 3 steps each
    resumed = search(tiny_config(epochs=2, out=str(tmp_path / "part"), **kw), entries=entries, splits=digits,
                     resume=first["checkpoint"])
    assert resumed["step"] == full["step"] == 9
    assert resumed["arch_steps"] == full["arch_steps"]
    assert [r["epoch"] for r in read_log(str(tmp_path / "part"))] == [0, 1, 2]
    a = checkpoint.load(full["checkpoint"])["arch_probs"]
    b = checkpoint.load(resumed["checkpoint"])["arch_probs"]
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)


def test_resume_refuses_a_different_space(tiny_config, digits, entries, tmp_path):
    first = search(tiny_config(epochs=0, steps_per_epoch=1), entries=entries, splits=digits)
    with pytest.raises(ValueError, match="resolution"):
        search(tiny_config(resolution=40, steps_per_epoch=1), entries=entries, splits=digits,
               resume=first["checkpoint"])


def test_auto_arch_lr_gives_the_same_travel_as_the_measured_default_and_the_original_for_long_runs():
    assert auto_arch_lr(250) == pytest.approx(0.4)  # lr x steps = 100
    assert auto_arch_lr(1_000_000) == 1e-3  # never below the original's lr
    assert auto_arch_lr(50) == 1.0  # capped
    # REINFORCE: a tenth of the travel (its step follows a sampled reward; at lr 1.0 it collapsed)
    assert auto_arch_lr(30, "reinforce") == pytest.approx(10 / 30)
    assert auto_arch_lr(30, "grad") == 1.0


def test_first_search_epoch_takes_no_architecture_step(tiny_config, digits, entries, tmp_path):
    res = search(tiny_config(warmup_epochs=1, epochs=2, steps_per_epoch=3, arch_every=1, target_ms=30.0,
                             arch_skip_epochs=1), entries=entries, splits=digits)
    log = read_log(str(tmp_path / "run"))
    assert [r["arch_steps"] for r in log] == [0, 0, 3] and res["arch_steps"] == 3


def test_resume_takes_this_runs_arch_lr_not_the_checkpoints(tiny_config, digits, entries, tmp_path):
    kw = dict(target_ms=30.0, steps_per_epoch=2, arch_every=1, out=str(tmp_path / "run"))
    first = search(tiny_config(epochs=2, stop_after=2, arch_lr=0.3, **kw), entries=entries, splits=digits)
    search(tiny_config(epochs=2, arch_lr=0.01, **kw), entries=entries, splits=digits, resume=first["checkpoint"])
    assert [r["arch_lr"] for r in read_log(str(tmp_path / "run"))] == [0.3, 0.3, 0.01]
    saved = checkpoint.load(str(tmp_path / "run" / "ckpt.pt"))
    assert saved["arch_optimizer"]["param_groups"][0]["lr"] == 0.01


def test_log_reports_convergence_per_epoch(tiny_config, digits, entries, tmp_path):
    search(tiny_config(target_ms=30.0, epochs=1), entries=entries, splits=digits)
    last = read_log(str(tmp_path / "run"))[-1]
    best = [max(p) for p in last["probs"]]
    assert last["max_prob"] == pytest.approx(sum(best) / len(best), abs=1e-3)
    assert 0.0 < last["entropy"] <= 1.95


def test_reinforce_search_runs_end_to_end_and_moves_the_logits(tiny_config, digits, entries, tmp_path):
    res = search(tiny_config(arch_algo="reinforce", rl_batch=3, target_ms=30.0, max_ms=40.0, arch_lr=0.1,
                             epochs=2), entries=entries, splits=digits)
    assert res["arch_steps"] == 8 and res["predicted_ms"] <= 40.0
    log = read_log(str(tmp_path / "run"))
    assert "rl_reward" in log[-1] and 0.0 <= log[-1]["rl_reward"] <= 2.0
    ckpt = checkpoint.load(res["checkpoint"])
    assert ckpt["rl_baseline"] is not None
    # eight policy-gradient steps at lr 0.1 move the logits far from their N(0, 1e-3) start
    assert max(float(p.max()) for p in ckpt["arch_probs"]) > 0.2
    out = derive(res["checkpoint"], tmp_path / "derived", onnx=False)
    assert out["summary"]["predicted_ms"] <= 40.0 and len(out["summary"]["choices"]) == 21


def test_reinforce_reward_trades_latency_softly_and_punishes_only_over_the_limit():
    from search_client.engine.reinforce import reward

    kw = dict(tradeoff=0.1, over=2.0)
    assert reward(0.8, 20.0, target_ms=10.0, max_ms=None, **kw) == pytest.approx(0.8 * 2 ** -0.1)
    assert reward(0.8, 9.0, target_ms=None, max_ms=10.0, **kw) == 0.8  # under the limit: accuracy alone
    assert reward(0.8, 20.0, target_ms=None, max_ms=10.0, **kw) == pytest.approx(0.8 / 4)
    # below the fill band a net that leaves the budget unused earns less; inside the band, accuracy alone
    fill = dict(kw, fill=0.9, under=0.5)
    assert reward(0.8, 4.5, target_ms=None, max_ms=10.0, **fill) == pytest.approx(0.8 * 0.5 ** 0.5)
    assert reward(0.8, 9.5, target_ms=None, max_ms=10.0, **fill) == 0.8


def test_a_loose_limit_is_spent_not_left_when_fill_is_asked_for(tiny_config, digits, entries, tmp_path):
    res = search(tiny_config(max_ms=80.0, epochs=1, fill=0.9), entries=entries, splits=digits)
    as_searched = derive(res["checkpoint"], tmp_path / "cfg", onnx=False)["summary"]
    assert res["predicted_ms"] == pytest.approx(as_searched["predicted_ms"])  # the search reports what derive writes
    # A limit well above what the argmax costs, wherever this machine's search converged (the search pulls
    # E[LAT] up to its own limit, so the argmax may sit at it): derive upgrades layers up to the fill ceiling.
    loose = 1.25 * as_searched["argmax_predicted_ms"]
    on = derive(res["checkpoint"], tmp_path / "on", max_ms=loose, onnx=False)["summary"]
    off = derive(res["checkpoint"], tmp_path / "off", max_ms=loose, fill=False, onnx=False)["summary"]
    assert off["fills"] == [] and on["fills"]
    assert off["predicted_ms"] < on["predicted_ms"] <= on["fill_ceiling_ms"] == pytest.approx(loose * 0.95)


def test_fill_is_opt_in(tiny_config, digits, entries, tmp_path):
    res = search(tiny_config(max_ms=80.0, epochs=0), entries=entries, splits=digits)  # fill defaults to 0
    loose = 1.25 * derive(res["checkpoint"], tmp_path / "cfg", onnx=False)["summary"]["argmax_predicted_ms"]
    default = derive(res["checkpoint"], tmp_path / "default", max_ms=loose, onnx=False)["summary"]
    forced = derive(res["checkpoint"], tmp_path / "forced", max_ms=loose, fill=True, onnx=False)["summary"]
    assert default["fills"] == [] and default["fill_ceiling_ms"] is None
    assert forced["fills"] and forced["predicted_ms"] > default["predicted_ms"]


def test_reinforce_moves_its_baseline_before_the_gradient():
    """The original: baseline += 0.99 * (mean - baseline), then the gradient against it. With weight 1
    and one sample the baseline becomes the sample's reward, its advantage is 0 and the logits stay;
    against the previous baseline (10) they would move."""
    from types import SimpleNamespace

    from search_client.engine import ddp
    from search_client.engine.reinforce import RLState, policy_loss, rl_step
    from search_client.supernet.supernet import SuperNet
    from shared.spaces import get_space

    state = RLState(baseline=0.5)
    assert state.update(1.0, 0.99) == pytest.approx(0.995) and state.last_reward == 1.0
    lp = torch.tensor(-1.0, requires_grad=True)
    policy_loss([1.0], [lp], state.baseline).backward()
    assert float(lp.grad) == pytest.approx(-(1.0 - 0.995))

    torch.manual_seed(0)
    net = SuperNet(get_space("proxyless-cifar", 8, 1.0, 10))
    before = [a.detach().clone() for a in net.arch_parameters()]
    opt = torch.optim.Adam(net.arch_parameters(), lr=0.1, betas=(0.0, 0.999))
    cfg = SimpleNamespace(rl_batch=1, rl_baseline_decay=1.0, target_ms=None, max_ms=None, rl_tradeoff=0.1,
                          rl_over=2.0, fill=0.0, rl_under=0.5)
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    rl_step(net, x, y, opt, None, torch.Generator().manual_seed(0), ddp.Dist(), cfg, RLState(baseline=10.0))
    for a, b in zip(net.arch_parameters(), before, strict=True):
        assert torch.equal(a.detach(), b)
