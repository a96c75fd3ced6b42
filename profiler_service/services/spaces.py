"""Search spaces this service can profile (from shared.spaces), described at their default parameters."""

from __future__ import annotations

from shared.schemas import SpaceOut
from shared.spaces import SPACES, get_space


def list_spaces() -> list[SpaceOut]:
    out = []
    for name, info in SPACES.items():
        space = get_space(name)
        candidates = [list(layer.candidates) for layer in space.layers]
        out.append(SpaceOut(name=name, description=space.description, defaults=dict(info.defaults),
                            layers=len(space.layers), candidates=candidates))
    return out
