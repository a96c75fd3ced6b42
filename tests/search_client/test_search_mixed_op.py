"""MixedOp: the BinaryConnect estimator, the two-path rescale, single-path weight steps, zero paths."""

from __future__ import annotations

import torch
from torch import nn

from search_client.supernet.mixed_op import MixedOp
from search_client.supernet.supernet import SuperNet
from shared.spaces import get_space


def toy_op(names=("a", "b", "c", "zero"), seed=0) -> MixedOp:
    torch.manual_seed(seed)
    ops = [None if n == "zero" else nn.Linear(4, 4) for n in names]
    op = MixedOp(ops, list(names))
    with torch.no_grad():
        op.alpha.copy_(torch.randn(len(names)))  # far from uniform, so the formula is not trivially met
    return op


def expected_alpha_grad(op: MixedOp, x: torch.Tensor, w: torch.Tensor, involved: list[int]) -> torch.Tensor:
    """dL/dalpha_i = sum_j dL/dg_j p_j (delta_ij - p_i) over the involved paths, L = <w, y>."""
    p = torch.softmax(op.alpha.detach()[involved], 0)
    with torch.no_grad():  # dL/dg_j = <dL/dy, o_j(x)>, and the zero path's output is 0
        dg = torch.stack([(w * op.ops[op.names[j]](x)).sum() if op.names[j] != "zero" else torch.tensor(0.0)
                          for j in involved])
    grad = torch.zeros_like(op.alpha)
    for a, i in enumerate(involved):
        grad[i] = sum(dg[b] * p[b] * (float(a == b) - p[a]) for b in range(len(involved)))
    return grad


def test_full_mode_gradient_matches_binaryconnect_formula():
    op = toy_op()
    x, w = torch.randn(3, 4), torch.randn(3, 4)
    op.sample_gates("full", torch.Generator().manual_seed(1))
    (w * op(x)).sum().backward()
    torch.testing.assert_close(op.alpha.grad, expected_alpha_grad(op, x, w, list(range(op.n))))


def test_two_mode_gradient_matches_formula_over_the_pair():
    for seed in range(6):
        op = toy_op(seed=seed)
        x, w = torch.randn(3, 4), torch.randn(3, 4)
        op.sample_gates("two", torch.Generator().manual_seed(seed))
        assert len(set(op.involved)) == 2 and op.active in op.involved
        (w * op(x)).sum().backward()
        grad = op.alpha.grad
        torch.testing.assert_close(grad, expected_alpha_grad(op, x, w, op.involved))
        others = [i for i in range(op.n) if i not in op.involved]
        assert torch.all(grad[others] == 0)


def test_forward_value_is_the_active_path_only():
    op = toy_op()
    x = torch.randn(3, 4)
    op.sample_gates("two", torch.Generator().manual_seed(3))
    name = op.names[op.active]
    want = torch.zeros(3, 4) if name == "zero" else op.ops[name](x)
    torch.testing.assert_close(op(x), want)


def test_two_mode_rescale_keeps_unsampled_probabilities():
    op = toy_op()
    opt = torch.optim.Adam([op.alpha], lr=0.5, betas=(0.0, 0.999))
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        before = op.probs().detach().clone()
        op.sample_gates("two", gen)
        (torch.randn(3, 4) * op(torch.randn(3, 4))).sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        op.rescale_()
        after = op.probs().detach()
        others = [i for i in range(op.n) if i not in op.involved]
        torch.testing.assert_close(after[others], before[others])
        torch.testing.assert_close(after[op.involved].sum(), before[op.involved].sum())
        assert not torch.allclose(after[op.involved], before[op.involved])  # the pair did move


def test_sampling_follows_the_generator():
    a, b = toy_op(), toy_op()
    ga, gb = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    for _ in range(10):
        a.sample_gates("two", ga)
        b.sample_gates("two", gb)
        assert (a.involved, a.active) == (b.involved, b.active)


def test_zero_in_two_mode_never_crashes_and_still_learns():
    op = toy_op(names=("a", "zero"))
    x, w = torch.randn(3, 4), torch.randn(3, 4)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):  # both orders: zero active and zero inactive
        op.alpha.grad = None
        op.sample_gates("two", gen)
        y = op(x)
        assert y is not None
        (w * y).sum().backward()
        assert op.alpha.grad is not None and torch.isfinite(op.alpha.grad).all()
        torch.testing.assert_close(op.alpha.grad, expected_alpha_grad(op, x, w, op.involved))


def test_weight_step_runs_one_path_and_leaves_other_grads_none():
    space = get_space("proxyless-mobile", 32, 0.35, 10)
    torch.manual_seed(0)
    net = SuperNet(space)
    called: list[str] = []
    for li, layer in enumerate(net.layers):
        for name, mod in layer.mixed.ops.items():
            mod.register_forward_hook(lambda *_, k=(li, name): called.append(k))
    net.sample("single", torch.Generator().manual_seed(0))
    net(torch.randn(4, 3, 32, 32)).sum().backward()
    chosen = net.sampled_choices()
    assert sorted(called) == sorted((i, c) for i, c in enumerate(chosen) if c != "zero")
    for layer, name in zip(net.layers, chosen, strict=True):
        for cand, mod in layer.mixed.ops.items():
            grads = [p.grad for p in mod.parameters()]
            if cand == name:
                assert all(g is not None for g in grads)
            else:
                assert all(g is None for g in grads), f"unsampled {cand} got a gradient"
        assert layer.mixed.alpha.grad is None
    for p in [*net.prefix.parameters(), *net.suffix.parameters()]:
        assert p.grad is not None


def test_arch_step_with_zero_active_gives_finite_grads_everywhere():
    space = get_space("proxyless-mobile", 32, 0.35, 10)
    torch.manual_seed(0)
    net = SuperNet(space)
    # a net past its first steps: at init every residual candidate adds zero (zero-init last BN), the
    # same as the zero path, so its gate gradient is 0 by construction
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
    gen = torch.Generator().manual_seed(0)
    zero_active = False
    for _ in range(5):
        net.sample("two", gen)
        zero_active |= any(m.names[m.active] == "zero" for m in net.mixed_ops)
        loss = nn.functional.cross_entropy(net(torch.randn(4, 3, 32, 32)), torch.arange(4))
        grads = torch.autograd.grad(loss, net.arch_parameters(), allow_unused=True)
        for m, g in zip(net.mixed_ops, grads, strict=True):
            assert g is not None and torch.isfinite(g).all()
            if m.names[m.active] == "zero":  # the edge still learns, from the inactive path
                assert g[m.involved].abs().sum() > 0
    assert zero_active


def test_full_v2_gives_full_modes_gradients_with_one_path_in_the_forward():
    for seed in range(4):  # several draws, so the active path is zero in some and a real op in others
        full, v2 = toy_op(), toy_op()
        x = torch.randn(3, 4, requires_grad=True)
        x2 = x.detach().clone().requires_grad_()
        w = torch.randn(3, 4)
        full.sample_gates("full", torch.Generator().manual_seed(seed))
        v2.sample_gates("full_v2", torch.Generator().manual_seed(seed))
        assert (full.active, full.involved) == (v2.active, v2.involved) and v2.mode == "full_v2"
        ran = []
        for name, op in v2.ops.items():
            op.register_forward_hook(lambda m, i, o, name=name, ran=ran: ran.append(name))
        y = v2(x2)
        active = v2.names[v2.active]
        if active != "zero":  # (with zero active it runs as full: no active output to recompute around)
            assert ran == [active]  # the forward ran the active path alone
        (w * full(x)).sum().backward()
        (w * y).sum().backward()
        torch.testing.assert_close(v2.alpha.grad, full.alpha.grad)
        torch.testing.assert_close(v2.alpha.grad, expected_alpha_grad(v2, x.detach(), w, list(range(v2.n))))
        torch.testing.assert_close(x2.grad, x.grad)
        if active != "zero":  # no weight gradient: the architecture step needs none
            assert all(p.grad is None for p in v2.ops.parameters())


def test_supernet_draws_paths_from_a_host_copy_refreshed_when_the_logits_change():
    net = SuperNet(get_space("proxyless-cifar", 8, 1.0, 10))
    first = net.host_logits()
    assert net.host_logits() is first  # unchanged logits: no new copy
    opt = torch.optim.Adam(net.arch_parameters(), lr=0.5)
    for a in net.arch_parameters():
        a.grad = torch.randn_like(a)
    opt.step()
    fresh = net.host_logits()
    assert fresh is not first
    for h, a in zip(fresh, net.arch_parameters(), strict=True):
        assert torch.equal(h, a.detach())
    # the same draws as from the logits themselves
    net.sample("single", torch.Generator().manual_seed(5))
    by_copy = net.sampled_choices()
    for m in net.mixed_ops:
        m.sample_path(None)
    gen = torch.Generator().manual_seed(5)
    for m in net.mixed_ops:
        m.sample_path(gen)
    assert net.sampled_choices() == by_copy
