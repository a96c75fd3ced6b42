"""A calibration for the space a search runs in, fitted first when the table has none for it.

The table's raw op sum is far off whole networks at small resolutions (a derived net predicted at
0.157 ms measured 0.116 ms), so a latency limit on it is a limit on the wrong number. The search flow
asks :func:`ensure_calibration` before it starts: it returns the table's calibration when that was
fitted on networks of this space, resolution and head, and otherwise has the device measure
``samples`` random networks of the space (POST /v1/networks) and fits one from them (POST
/v1/tables/{id}/calibration). Everything goes through this one function, so a one-request
calibration job on the service can replace the client-side measuring without touching the search.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.spaces import SearchSpace

DEFAULT_SAMPLES = 20  # as `search-client calibrate`; at least 3


def _fitted_for(client, cal: dict, space: SearchSpace) -> bool:
    """Whether the calibration's networks are of this space (one network is looked at)."""
    ids = cal.get("networks") or []
    if not ids:
        return False
    arch = client.get_network(ids[0]).arch
    return (arch.get("space"), arch.get("resolution"), arch.get("num_classes"), arch.get("width_mult")) == \
        (space.name, space.resolution, space.num_classes, space.width_mult)


def ensure_calibration(client, table_id: str, space: SearchSpace, *, samples: int = DEFAULT_SAMPLES,
                       seed: int = 0, progress: bool = True,
                       say: Callable[[str], None] = print) -> dict:
    """The table's calibration for ``space``; fitted from ``samples`` measured random nets if missing."""
    cal = client.get_calibration(table_id)
    if cal and _fitted_for(client, cal, space):
        return cal
    if samples < 3:
        raise ValueError(f"table {table_id} has no calibration for {space.name} @ {space.resolution} px and "
                         f"{samples} networks cannot fit one (at least 3); run `search-client calibrate "
                         f"--profiler URL --table {table_id} --space {space.name} --resolution "
                         f"{space.resolution} --num-classes {space.num_classes}` or pass --calib-samples 20")
    from tqdm import tqdm

    from search_client.latency.fidelity import measure_all, sample_choices

    why = "none yet" if not cal else "its calibration was fitted on other networks"
    say(f"table {table_id}: calibrating for {space.name} @ {space.resolution} px ({why}): the device "
        f"measures {samples} random networks")
    archs = sample_choices(space, samples, seed)
    with tqdm(total=len(archs), desc="measuring calibration networks", unit="net", disable=not progress) as bar:
        measured = measure_all(client, table_id, space, archs, progress=lambda n: bar.update(1))
    cal = client.calibrate(table_id, [m.network_id for m in measured])
    say(f"calibration v{cal['version']}: intercept {cal['intercept_ms']:.3f} ms, scale {cal['scale']:.3f}, "
        f"leave-one-out error {100 * (cal.get('loo_rmspe') or 0):.1f}% on {cal['n_networks']} networks")
    return cal


__all__ = ["DEFAULT_SAMPLES", "ensure_calibration"]
