"""SuperNet: parameter groups, weight inheritance by the standalone net, ONNX export of the result."""

from __future__ import annotations

import random

import torch

from search_client.engine.derive import check_onnx, export_onnx
from search_client.supernet.supernet import SuperNet
from shared.arch import Net, make_arch
from shared.spaces import get_space


def trained_supernet(space, steps: int = 3) -> SuperNet:
    """A supernet whose BN running stats moved away from their init, so inheritance is visible."""
    torch.manual_seed(0)
    net = SuperNet(space)
    gen = torch.Generator().manual_seed(0)
    net.train()
    with torch.no_grad():
        for _ in range(steps):
            net.sample("single", gen)
            net(torch.randn(4, 3, space.resolution, space.resolution))
    return net


def test_parameter_groups_are_disjoint_and_complete():
    net = SuperNet(get_space("proxyless-mobile", 32, 0.35, 10))
    arch, weights = net.arch_parameters(), net.weight_parameters()
    assert len(arch) == 21
    assert {id(p) for p in arch}.isdisjoint({id(p) for p in weights})
    assert len(arch) + len(weights) == len(list(net.parameters()))


def test_standalone_inherits_weights_and_matches_the_fixed_path():
    space = get_space("proxyless-mobile", 32, 0.35, 10)
    net = trained_supernet(space)
    rng = random.Random(0)
    choices = [rng.choice(layer.candidates) for layer in space.layers]
    choices[2] = "zero" if "zero" in space.layers[2].candidates else choices[2]
    standalone = net.standalone(choices)
    assert isinstance(standalone, Net)
    net.set_choices(choices)
    net.eval()
    standalone.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(standalone(x), net(x), rtol=1e-5, atol=1e-5)
    # and it is the layout of a net built from the arch JSON: a strict load works both ways
    from shared.arch import build_net

    rebuilt = build_net(make_arch(space, choices))
    rebuilt.load_state_dict(standalone.state_dict(), strict=True)


def test_standalone_of_cifar_space():
    space = get_space("proxyless-cifar", 16, 0.5, 10)
    net = trained_supernet(space, steps=2)
    choices = [layer.candidates[-1] for layer in space.layers]
    standalone = net.standalone(choices).eval()
    net.set_choices(choices)
    net.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(standalone(x), net(x), rtol=1e-5, atol=1e-5)


def test_derive_is_argmax():
    net = SuperNet(get_space("proxyless-mobile", 32, 0.35, 10))
    with torch.no_grad():
        for m in net.mixed_ops:
            m.alpha.zero_()
            m.alpha[1] = 1.0
    assert net.derive() == [layer.candidates[1] for layer in net.space.layers]


def test_onnx_export_matches_torch(tmp_path):
    space = get_space("proxyless-mobile", 32, 0.35, 10)
    net = trained_supernet(space)
    standalone = net.standalone().eval()
    path = export_onnx(standalone, 32, tmp_path / "net.onnx")
    diff = check_onnx(standalone, path, 32, batch=3)
    assert diff <= 1e-4


def test_compiled_candidates_keep_state_dict_keys_and_outputs():
    torch.manual_seed(0)
    net = SuperNet(get_space("proxyless-cifar", 8, 1.0, 10)).eval()
    ref = SuperNet(get_space("proxyless-cifar", 8, 1.0, 10)).eval()
    ref.load_state_dict(net.state_dict())
    keys = list(net.state_dict())
    net.compile_candidates(backend="eager")  # dynamo tracing per op; the inductor backend on a GPU run
    assert list(net.state_dict()) == keys
    x = torch.randn(2, 3, 8, 8)
    choices = [layer.candidates[0] for layer in net.space.layers]
    net.set_choices(choices)
    ref.set_choices(choices)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x))
