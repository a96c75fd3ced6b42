"""Candidates of a layer start as one function, and the supernet then learns with random paths."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from search_client.data.datasets import load_dataset
from search_client.supernet.candidate_init import align_candidates_
from search_client.supernet.supernet import SuperNet
from shared.ops import build_op
from shared.spaces import get_space
from shared.specs import MBCONV, OpSpec


def _candidate_outputs(layer, x):
    return {n: op(x) for n, op in layer.mixed.ops.items()}


@pytest.mark.parametrize("space_name", ["proxyless-mobile", "proxyless-cifar"])
def test_candidates_of_a_layer_compute_the_same_function_at_init(space_name):
    torch.manual_seed(0)
    net = SuperNet(get_space(space_name, 32, 0.5, 10)).train()
    x = net.prefix(torch.randn(6, 3, 32, 32))  # (B, C, H, W) entering the first searchable layer
    with torch.no_grad():
        for layer in net.layers:
            outs = _candidate_outputs(layer, x)
            # ops of one type (MBConv / sep_conv of one dilation) are crops of one master
            by_type: dict[tuple, list[torch.Tensor]] = {}
            for name, y in outs.items():
                op = layer.mixed.ops[name]
                dil = tuple(m.dilation for m in op.modules() if isinstance(m, nn.Conv2d))
                by_type.setdefault((type(op), dil), []).append(y)
            for ys in by_type.values():
                for y in ys[1:]:
                    torch.testing.assert_close(y, ys[0], atol=1e-5, rtol=1e-5)
            x = layer(x)


def test_independent_init_gives_different_candidates():
    torch.manual_seed(0)
    net = SuperNet(get_space("proxyless-mobile", 32, 0.5, 10), aligned_init=False).train()
    x = net.prefix(torch.randn(6, 3, 32, 32))
    with torch.no_grad():
        outs = list(_candidate_outputs(net.layers[0], x).values())
    assert (outs[0] - outs[1]).abs().max() > 1e-2


def test_no_weight_of_an_aligned_candidate_is_dead():
    torch.manual_seed(0)
    # The zeroed kernel rims and projection columns get a gradient at once (their inputs are not zero);
    # the extra channels' expand and depthwise weights from the second step, once those columns moved.
    ops = [build_op(OpSpec(MBCONV, h=16, w=16, cin=8, cout=16, kernel=k, stride=2, expand=e))
           for k in (3, 5, 7) for e in (3, 6)]
    align_candidates_(ops)
    torch.manual_seed(0)
    x = torch.randn(4, 8, 16, 16)  # (B, C, H, W)
    target = torch.randn(4, 16, 8, 8)  # a loss BN cannot normalise away
    for op in ops:
        op.train()
        opt = torch.optim.SGD(op.parameters(), lr=0.01)  # small: no ReLU6 dies
        for _ in range(2):
            opt.zero_grad()
            (op(x) * target).mean().backward()
            opt.step()
        for name, p in op.named_parameters():
            if p.dim() == 4:  # conv weights: every position, rims and extra channels included
                assert (p.grad != 0).all(), f"{name} of {op} has dead weights"


# proxyless-cifar (12 plain layers, no residual) learns more slowly: 0.29 after these 4 epochs, 0.07 before
@pytest.mark.parametrize(("space_name", "width", "floor"), [("proxyless-mobile", 0.35, 0.4),
                                                           ("proxyless-cifar", 0.25, 0.2)])
def test_random_path_supernet_learns_digits(space_name, width, floor):
    """The regression this init fixes: one random path per step used to stay at chance on digits
    (proxyless-cifar too, until its separable convs started near the identity beside identity/pools)."""
    torch.manual_seed(0)
    splits = load_dataset("digits", resolution=32, seed=0)
    net = SuperNet(get_space(space_name, 32, width, splits.num_classes))
    opt = torch.optim.SGD(net.weight_parameters(), lr=0.0125, momentum=0.9, nesterov=True)
    gen = torch.Generator().manual_seed(0)
    dl = torch.utils.data.DataLoader(splits.train, batch_size=64, shuffle=True, drop_last=True)
    net.train()
    for _ in range(4):
        for x, y in dl:
            net.sample("single", gen)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y, label_smoothing=0.1).backward()
            opt.step()
    correct = total = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(splits.valid, batch_size=128):
            net.sample("single", gen)  # a fresh random path per batch, BN on batch statistics
            correct += int((net(x).argmax(1) == y).sum())
            total += len(y)
    assert correct / total > floor  # chance is 0.1; independent init stayed at 0.1-0.15


def test_cifar_convs_start_near_the_identity_beside_parameter_free_candidates():
    torch.manual_seed(0)
    net = SuperNet(get_space("proxyless-cifar", 32, 0.5, 10)).train()
    layer = next(la for la in net.layers if "identity" in la.mixed.names)
    x = torch.randn(8, layer.mixed.ops["3x3_SepConv"][1].in_channels, 16, 16)  # (B, C, H, W)
    with torch.no_grad():
        outs = {n: op(x) for n, op in layer.mixed.ops.items()}
    expect = F.batch_norm(F.relu(x), None, None, training=True, eps=1e-3)  # BN(ReLU(x)), unit affine
    for name in ("3x3_SepConv", "5x5_SepConv", "7x7_SepConv", "3x3_DilConv"):
        torch.testing.assert_close(outs[name], expect, atol=1e-4, rtol=1e-4)
