"""Random architectures of a space: what calibration and validation measure.

Shared by the service (a calibration job draws its networks on the device from a seed) and the
client (validation draws networks the calibration never saw), so one seed names one set everywhere.
"""

from __future__ import annotations

import random

from shared.spaces import SearchSpace


def sample_choices(space: SearchSpace, n: int, seed: int,
                   exclude: set[tuple[str, ...]] = frozenset()) -> list[list[str]]:
    """n distinct random architectures (uniform per layer), none of them in ``exclude``."""
    rng = random.Random(seed)
    seen, out = set(exclude), []
    for _ in range(n * 100):
        choices = tuple(rng.choice(layer.candidates) for layer in space.layers)
        if choices not in seen:
            seen.add(choices)
            out.append(list(choices))
            if len(out) == n:
                return out
    raise ValueError(f"could not draw {n} distinct architectures outside the {len(exclude)} excluded ones")
