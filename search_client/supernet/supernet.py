"""The gated supernet: the space's fixed prefix, one mixed op per searchable layer, the fixed suffix.

Module layout mirrors ``shared.arch.Net`` (``prefix``, ``layers``, ``suffix``) so the standalone net of
any choice inherits the supernet's weights with a strict state-dict load. Candidates are built with
``idskip=False``; the layer adds the shortcut itself, which makes a candidate's state dict equal to
the standalone op's (the shortcut has no parameters).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from search_client.supernet.candidate_init import align_candidates_, align_sep_convs_
from search_client.supernet.mixed_op import GATE_MODES, ZERO, MixedOp
from shared.arch import Net
from shared.ops import build_op, zero_last_bn_
from shared.spaces import Layer, SearchSpace

WEIGHT_MODE = "single"


class SearchLayer(nn.Module):
    """``x + mixed(x)`` on a shortcut layer (zero chosen -> ``x``), ``mixed(x)`` otherwise."""

    def __init__(self, layer: Layer, *, aligned_init: bool = True):
        super().__init__()
        if ZERO in layer.candidates and not layer.shortcut:
            raise ValueError("a zero candidate needs a shortcut layer (the layer would have no output)")
        ops = []
        for name in layer.candidates:
            spec = layer.spec(name)
            ops.append(None if spec is None else build_op(dataclasses.replace(spec, idskip=False)))
        real = [op for op in ops if op is not None]
        if layer.shortcut:  # built without idskip, so init_weights left their residual BN at one
            for op in real:
                zero_last_bn_(op)
        if aligned_init:
            align_candidates_(real)
            # identity / pools keep the shape: the convs beside them start near the identity too
            passes_input = any(len(op.state_dict()) == 0 for op in real)
            align_sep_convs_(real, identity=passes_input)
        self.mixed = MixedOp(ops, layer.candidates)
        self.shortcut = layer.shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, H, W) -> (B, Cout, H/s, W/s)
        y = self.mixed(x)
        if y is None:
            return x
        return x + y if self.shortcut else y


class SuperNet(nn.Module):
    """``aligned_init``: the candidates of a layer start as one function (see ``candidate_init``);
    off, each starts from its own independent init as in the original."""

    def __init__(self, space: SearchSpace, *, aligned_init: bool = True):
        super().__init__()
        self.space = space
        self.prefix = nn.Sequential(*[build_op(s) for s in space.prefix])
        self.layers = nn.Sequential(*[SearchLayer(layer, aligned_init=aligned_init) for layer in space.layers])
        self.suffix = nn.Sequential(*[build_op(s) for s in space.suffix])
        self._host_logits: tuple[tuple[int, ...], list[torch.Tensor]] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, R, R) -> (B, classes)
        return self.suffix(self.layers(self.prefix(x)))

    @property
    def mixed_ops(self) -> list[MixedOp]:
        return [layer.mixed for layer in self.layers]

    # ---- parameter groups ----------------------------------------------------------------------

    def arch_parameters(self) -> list[nn.Parameter]:
        return [m.alpha for m in self.mixed_ops]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def named_weight_parameters(self) -> list[tuple[str, nn.Parameter]]:
        arch = {id(p) for p in self.arch_parameters()}
        return [(n, p) for n, p in self.named_parameters() if id(p) not in arch]

    # ---- sampling ------------------------------------------------------------------------------

    def host_logits(self) -> list[torch.Tensor]:
        """A CPU copy of every layer's logits, refreshed only when a logit tensor changed in place (an
        optimizer step, a rescale, a state-dict load bump its version counter): weight steps between
        two architecture steps then draw their paths without reading the device."""
        alphas = self.arch_parameters()
        versions = tuple(a._version for a in alphas)
        if self._host_logits is None or self._host_logits[0] != versions:
            flat = torch.cat([a.detach() for a in alphas]).cpu()  # one copy for all layers
            self._host_logits = (versions, list(flat.split([a.numel() for a in alphas])))
        return self._host_logits[1]

    def sample(self, mode: str, generator: torch.Generator | None = None) -> None:
        """``single``: one path per layer (weight step); ``two`` / ``full`` / ``full_v2``: gated (arch step)."""
        if mode != WEIGHT_MODE and mode not in GATE_MODES:
            raise ValueError(f"sample mode must be one of single, {', '.join(GATE_MODES)}; got {mode!r}")
        for m, logits in zip(self.mixed_ops, self.host_logits(), strict=True):
            if mode == WEIGHT_MODE:
                m.sample_path(generator, logits)
            else:
                m.sample_gates(mode, generator, logits)

    def compile_candidates(self, **kwargs) -> None:
        """``torch.compile`` every candidate op and the fixed prefix / suffix in place: one graph per op,
        whose shapes never change, instead of one per sampled path of the whole net (a graph per
        architecture would recompile nearly every step). State-dict keys are unchanged."""
        for module in [*self.prefix, *self.suffix, *(op for m in self.mixed_ops for op in m.ops.values())]:
            module.compile(**kwargs)

    def set_choices(self, choices: list[str] | None = None) -> None:
        """Fix one path per layer: the given choices, or the argmax ones."""
        choices = choices if choices is not None else [None] * len(self.mixed_ops)
        if len(choices) != len(self.mixed_ops):
            raise ValueError(f"{len(choices)} choices for {len(self.mixed_ops)} layers")
        for m, c in zip(self.mixed_ops, choices, strict=True):
            m.set_chosen(c)

    def rescale_arch_(self) -> None:
        for m in self.mixed_ops:
            m.rescale_()

    # ---- architecture read-out -----------------------------------------------------------------

    def arch_probs(self) -> list[torch.Tensor]:
        """Per-layer probs for E[LAT] (pair-renormalised in ``two`` mode), differentiable in alpha."""
        return [m.sampled_probs() for m in self.mixed_ops]

    def full_probs(self) -> list[torch.Tensor]:
        return [m.probs() for m in self.mixed_ops]

    def derive(self) -> list[str]:
        return [m.chosen() for m in self.mixed_ops]

    def entropy(self) -> float:
        """Mean per-layer entropy of softmax(alpha), in nats."""
        return sum(m.entropy() for m in self.mixed_ops) / max(len(self.mixed_ops), 1)

    def sampled_choices(self) -> list[str]:
        return [m.names[m.active] for m in self.mixed_ops]

    # ---- standalone ----------------------------------------------------------------------------

    def standalone(self, choices: list[str] | None = None) -> Net:
        """The plain ``shared.arch.Net`` of ``choices`` (argmax by default) with the supernet's weights."""
        choices = self.derive() if choices is None else list(choices)
        net = Net(list(self.space.prefix), self.space.layer_specs(choices), list(self.space.suffix))
        net.prefix.load_state_dict(self.prefix.state_dict(), strict=True)
        net.suffix.load_state_dict(self.suffix.state_dict(), strict=True)
        for target, layer, name in zip(net.layers, self.layers, choices, strict=True):
            if name != ZERO:
                target.load_state_dict(layer.mixed.ops[name].state_dict(), strict=True)
        return net.to(next(self.parameters()).device)
