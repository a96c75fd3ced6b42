"""Start the candidates of one searchable layer as the same function.

Each candidate of a ProxylessNAS layer has its own weights. Initialised independently, the candidates
of a layer output unrelated channels, so the layer after it sees features whose meaning changes with
every sampled path. On a small dataset (digits: ~20 steps an epoch) the supernet then never learns:
measured with one random path per step, train accuracy stays at chance and the loss climbs above
log(classes), while a fixed path reaches 95% in six epochs.

So the candidates of a layer that share a module type start as crops of one master: the largest
candidate, with its kernel taps outside the smallest kernel and its projection inputs beyond the
smallest expansion set to zero. A smaller candidate is the master cropped (channel prefixes, centred
kernels), so at step 0 every candidate computes exactly the master's function. Nothing is tied after
that: each candidate trains its own weights, and the zeroed weights get gradients (their inputs are
not zero), so the larger kernels and the extra channels grow from there. With this (and the zero
residual BN of ``shared.ops.init_weights``) the same random-path run reaches ~75% in six epochs.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from shared.ops import SepConv


def _group_key(module: nn.Module) -> tuple:
    # a dilated conv is a different function from the plain one of the same shape: never cropped into it
    convs = tuple((n, m.dilation, m.groups > 1) for n, m in module.named_modules() if isinstance(m, nn.Conv2d))
    return type(module), tuple(module.state_dict().keys()), convs


def _crop(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Channel dims (0, 1) keep their prefix; kernel dims (2, ...) keep their centre."""
    index = []
    for d, (want, have) in enumerate(zip(shape, t.shape, strict=True)):
        start = 0 if d < 2 else (have - want) // 2
        index.append(slice(start, start + want))
    return t[tuple(index)]


@torch.no_grad()
def _restrict_master_(master: nn.Module, core: dict[str, torch.Size]) -> None:
    """Zero the master's conv weights outside the core: kernel taps beyond the smallest kernel, and
    (for a dense conv) input channels beyond the smallest width. Output channels stay random, so the
    extra channels compute something and their zeroed outgoing weights get a gradient."""
    for name, m in master.named_modules():
        if not isinstance(m, nn.Conv2d):
            continue
        w, want = m.weight, core[f"{name}.weight" if name else "weight"]
        mask = torch.zeros_like(w)
        keep = [slice(None)]  # output channels: all
        keep.append(slice(0, want[1]) if m.groups == 1 else slice(None))
        for d in range(2, w.dim()):
            start = (w.shape[d] - want[d]) // 2
            keep.append(slice(start, start + want[d]))
        mask[tuple(keep)] = 1
        w.mul_(mask)


@torch.no_grad()
def align_candidates_(candidates: list[nn.Module]) -> None:
    """Make the candidates of each module type compute one function at initialisation (in place)."""
    groups: dict[tuple, list[nn.Module]] = defaultdict(list)
    for c in candidates:
        if len(c.state_dict()) > 0:
            groups[_group_key(c)].append(c)
    for members in groups.values():
        if len(members) < 2:
            continue
        states = [m.state_dict() for m in members]
        master = max(members, key=lambda m: sum(p.numel() for p in m.parameters()))
        source = master.state_dict()
        if not all(_fits(s[k].shape, source[k].shape) for s in states for k in s):
            continue  # some member is larger than the master in some dim: not crops of one another
        core = {k: torch.Size(min(s[k].shape[d] for s in states) for d in range(source[k].dim()))
                for k in source}
        _restrict_master_(master, core)
        for m, state in zip(members, states, strict=True):
            if m is not master:
                for k, t in state.items():
                    t.copy_(_crop(source[k], t.shape))


def _fits(shape: torch.Size, outer: torch.Size) -> bool:
    return len(shape) == len(outer) and all(a <= b for a, b in zip(shape, outer, strict=True))


@torch.no_grad()
def align_sep_convs_(candidates: list[nn.Module], *, identity: bool) -> None:
    """The CIFAR op set (sep_conv / dil_conv beside identity and pools): every separable conv of the
    layer starts as one function with a centre-tap depthwise kernel, which a dilated and an undilated
    conv compute alike. ``identity`` (a layer whose parameter-free candidates pass the input on): that
    function is BN(ReLU(x)), a unit depthwise tap and an identity pointwise conv, so every candidate
    of the layer starts close to the identity and the next layer sees the same features whichever
    path ran. Without it the convs hand on a random projection while identity and pools hand on x,
    and with one random path per step the supernet stays at chance (loss ln 10)."""
    seps = [c for c in candidates if isinstance(c, SepConv)]
    if not seps:
        return
    dws = [next(m for m in c if isinstance(m, nn.Conv2d) and m.groups > 1) for c in seps]
    pws = [next(m for m in c if isinstance(m, nn.Conv2d) and m.groups == 1) for c in seps]
    k = dws[0].kernel_size[0] // 2
    centre = torch.ones_like(dws[0].weight[:, :, k, k]) if identity else dws[0].weight[:, :, k, k].clone()
    if identity and pws[0].in_channels != pws[0].out_channels:
        raise ValueError("an identity start needs as many output channels as input channels")
    pw = (torch.eye(pws[0].out_channels)[:, :, None, None] if identity else pws[0].weight.clone())
    for dw, p in zip(dws, pws, strict=True):
        c = dw.kernel_size[0] // 2
        dw.weight.zero_()
        dw.weight[:, :, c, c] = centre
        p.weight.copy_(pw)
