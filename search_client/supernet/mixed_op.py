"""A ProxylessNAS mixed op: N candidate paths behind binary gates, one architecture logit per path.

Modes (set by the sampling calls, read by ``forward``):

- ``single``: one path runs (a weight step samples it from softmax(alpha); validation fixes the
  argmax). Nothing else is touched, so activation memory is that of one path and the other
  candidates' ``.grad`` stays None, which keeps weight decay and momentum off them.
- ``two`` (default architecture step): two distinct paths drawn without replacement, their probs
  renormalised over the pair, the active one drawn from that pair; both run, the inactive one under
  ``no_grad``. After the optimizer step ``rescale_()`` restores the pair's sum of exp(alpha) so the
  probabilities of the unsampled paths do not change.
- ``full``: every path runs, the sampled one with gradient, the rest under ``no_grad``.
- ``full_v2`` (the original's default): ``full``'s gradient at one path's activation memory. The
  forward runs the sampled path alone; the backward recomputes every other path under ``no_grad`` to
  get its gate gradient ``<dL/dy, o_j(x)>`` and returns no weight gradients (an architecture step
  needs none). ``full`` keeps the N-1 other outputs of every layer for backward; at ImageNet scale
  (224 px, batch 256) that is gigabytes, which the recompute trades for N-1 extra forwards.

The BinaryConnect estimator ``dL/dalpha_i = sum_j dL/dg_j * p_j * (delta_ij - p_i)`` is built as a
straight-through gate: ``g = onehot(active) + p - p.detach()``. Its value is exactly the binary gate,
and its gradient w.r.t. alpha is the softmax Jacobian applied to ``dL/dg``, which is the formula above
(over the pair in ``two`` mode, over all paths in ``full``). The gate gradient ``dL/dg_j`` is
``<dL/dy, o_j(x)>``; the zero path's output is zero, so its gate gradient is 0 rather than missing,
and an edge whose active path is zero still learns from the inactive path's output (the original code
skipped such edges).
"""

from __future__ import annotations

import torch
from torch import nn

ZERO = "zero"
GATE_MODES = ("two", "full", "full_v2")


class _ActivePathGates(torch.autograd.Function):
    """y = o_active(x), whose backward gives dL/dx through the active path and, for every involved
    path j, dL/dg_j = <dL/dy, o_j(x)> by recomputing o_j (the original's ArchGradientFunction)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, gates: torch.Tensor, mixed: MixedOp) -> torch.Tensor:
        detached = x.detach().requires_grad_(x.requires_grad)
        with torch.enable_grad():
            out = mixed.run_path(mixed.active, detached)  # (B, Cout, H', W'), its graph kept for backward
        ctx.mixed, ctx.detached, ctx.out = mixed, detached, out
        device = x.device.type  # the recompute in backward runs under the forward's mixed precision
        ctx.autocast = (device, torch.get_autocast_dtype(device), torch.is_autocast_enabled(device))
        return out.detach()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        mixed, detached, out = ctx.mixed, ctx.detached, ctx.out
        grad_x = None
        if detached.requires_grad:
            (grad_x,) = torch.autograd.grad(out, detached, grad_out, allow_unused=True)
        binary = torch.zeros(len(mixed.involved), dtype=grad_out.dtype, device=grad_out.device)
        device, dtype, enabled = ctx.autocast
        with torch.no_grad(), torch.autocast(device, dtype=dtype, enabled=enabled):
            for k, i in enumerate(mixed.involved):
                y = out.detach() if i == mixed.active else mixed.run_path(i, detached.detach())
                if y is not None:  # the zero path's output is zero: so is its gate gradient
                    binary[k] = (y.float() * grad_out.float()).sum()
        ctx.mixed = ctx.detached = ctx.out = None
        return grad_x, binary.to(grad_out.dtype), None


class MixedOp(nn.Module):
    """Candidate paths (``None`` for zero) with architecture logits ``alpha``.

    Candidates live in an ``nn.ModuleDict`` keyed by op name, so a candidate's state dict is the same
    as the standalone op's. ``forward`` returns None when the zero path is the only contribution;
    the caller (a shortcut layer) then passes its input through.
    """

    def __init__(self, candidates: list[nn.Module | None], names: list[str] | tuple[str, ...], *,
                 init_std: float = 1e-3):
        super().__init__()
        if len(candidates) != len(names) or not names:
            raise ValueError(f"{len(candidates)} candidates for {len(names)} names")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate candidate names: {list(names)}")
        for name, op in zip(names, candidates, strict=True):
            if (op is None) != (name == ZERO):
                raise ValueError(f"candidate {name!r}: only 'zero' may be None, and it must be")
        self.names = tuple(names)
        self.ops = nn.ModuleDict({n: op for n, op in zip(names, candidates, strict=True) if op is not None})
        self.alpha = nn.Parameter(torch.empty(len(names)).normal_(0.0, init_std))
        self.mode = "single"
        self.active = 0
        self.involved: list[int] = [0]
        self._alpha_before: torch.Tensor | None = None  # pair logits before the arch step (two mode)

    # ---- probabilities -------------------------------------------------------------------------

    @property
    def n(self) -> int:
        return len(self.names)

    def probs(self) -> torch.Tensor:  # (N,) softmax over all paths, differentiable in alpha
        return torch.softmax(self.alpha, dim=0)

    def chosen(self) -> str:
        return self.names[int(torch.argmax(self.alpha.detach()))]

    def entropy(self) -> float:
        p = self.probs().detach()
        return float(-(p * torch.log(p.clamp_min(1e-12))).sum())

    def sampled_probs(self) -> torch.Tensor:
        """(N,) probs the latency term uses: the renormalised pair in ``two`` mode (zeros elsewhere),
        the full softmax otherwise. Differentiable in alpha, so E[LAT] is too."""
        if self.mode != "two":
            return self.probs()
        idx = torch.tensor(self.involved, device=self.alpha.device)
        pair = torch.softmax(self.alpha[idx], dim=0)
        return torch.zeros_like(self.alpha).index_put((idx,), pair)

    # ---- sampling ------------------------------------------------------------------------------

    def _draw(self, p: torch.Tensor, k: int, generator: torch.Generator | None) -> list[int]:
        # Drawn on the CPU from a CPU generator: every rank holding the same alpha and the same
        # generator state draws the same paths, whatever device the model is on.
        return torch.multinomial(p.detach().float().cpu(), k, replacement=False,
                                 generator=generator).tolist()

    def _logits(self, alpha_cpu: torch.Tensor | None) -> torch.Tensor:
        """The logits to draw from: ``alpha_cpu`` (a host copy the caller keeps, so a step on a GPU
        reads no device value) or alpha itself."""
        return self.alpha.detach() if alpha_cpu is None else alpha_cpu

    def sample_path(self, generator: torch.Generator | None = None, alpha_cpu: torch.Tensor | None = None) -> None:
        """Weight step: one path from softmax(alpha)."""
        self.mode, self._alpha_before = "single", None
        self.active = self._draw(torch.softmax(self._logits(alpha_cpu), dim=0), 1, generator)[0]
        self.involved = [self.active]

    def sample_gates(self, mode: str = "two", generator: torch.Generator | None = None,
                     alpha_cpu: torch.Tensor | None = None) -> None:
        """Architecture step in ``two``, ``full`` or ``full_v2`` mode."""
        if mode not in GATE_MODES:
            raise ValueError(f"gate mode must be one of {', '.join(GATE_MODES)}, not {mode!r}")
        self._alpha_before = None
        logits = self._logits(alpha_cpu)
        if mode == "two" and self.n >= 2:
            pair = self._draw(torch.softmax(logits, dim=0), 2, generator)
            pick = self._draw(torch.softmax(logits[pair], dim=0), 1, generator)[0]
            self.mode, self.involved, self.active = "two", pair, pair[pick]
            self._alpha_before = self.alpha.detach().clone()
        else:
            self.mode = "full_v2" if mode == "full_v2" else "full"
            self.involved = list(range(self.n))
            self.active = self._draw(torch.softmax(logits, dim=0), 1, generator)[0]

    def set_chosen(self, name: str | None = None) -> None:
        """Run one fixed path: the given name, or the argmax."""
        self.mode, self._alpha_before = "single", None
        self.active = self.names.index(name) if name is not None else self.names.index(self.chosen())
        self.involved = [self.active]

    @torch.no_grad()
    def rescale_(self) -> None:
        """After a ``two``-mode step: shift the pair so sum(exp(alpha)) over it is unchanged."""
        if self.mode != "two" or self._alpha_before is None:
            return
        idx = torch.tensor(self.involved, device=self.alpha.device)
        offset = torch.logsumexp(self.alpha[idx], 0) - torch.logsumexp(self._alpha_before[idx], 0)
        self.alpha[idx] -= offset
        self._alpha_before = None

    # ---- forward -------------------------------------------------------------------------------

    def run_path(self, i: int, x: torch.Tensor) -> torch.Tensor | None:
        name = self.names[i]
        return None if name == ZERO else self.ops[name](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | None:  # (B, Cin, H, W) -> (B, Cout, H', W')
        if self.mode == "single":
            return self.run_path(self.active, x)
        idx = torch.tensor(self.involved, device=self.alpha.device)
        p = torch.softmax(self.alpha[idx], dim=0)  # renormalised over the involved paths
        hard = (idx == self.active).to(p.dtype)
        gates = hard + p - p.detach()  # value: the binary gate; gradient: BinaryConnect via softmax
        if self.mode == "full_v2" and self.names[self.active] != ZERO:
            return _ActivePathGates.apply(x, gates, self)
        # (full_v2 with the zero path active runs as full: there is no active output to recompute around)
        out: torch.Tensor | None = None
        for k, i in enumerate(self.involved):
            if i == self.active:
                y = self.run_path(i, x)
            else:
                with torch.no_grad():  # inactive path: only its gate learns from it
                    y = self.run_path(i, x)
            if y is None:  # zero path: contributes g * 0, so nothing to add and dL/dg = 0
                continue
            term = gates[k] * y
            out = term if out is None else out + term
        return out

    def extra_repr(self) -> str:
        p = self.probs().detach().tolist()
        return ", ".join(f"{n}:{q:.3f}" for n, q in zip(self.names, p, strict=True))
