"""A calibration for the space a search runs in, fitted first when the table has none for it.

The table's raw op sum is far off whole networks at small resolutions (a derived net predicted at
0.157 ms measured 0.116 ms), so a latency limit on it is a limit on the wrong number. The search flow
asks :func:`ensure_calibration` before it starts: it returns the table's calibration when its scope is
this space, resolution, width and head, and otherwise asks the device for one in a single request
(POST /v1/tables/{id}/calibration with ``samples``: the device draws, measures and fits, as a job).

The networks a calibration was fitted on are also the device's own range for the space: their measured
latencies are what a relative budget (``--max-ms p50``) and ``calibrate``'s summary are read from.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.schemas import NetworkOut
from shared.spaces import SearchSpace

DEFAULT_SAMPLES = 20  # as `search-client calibrate`; at least 3


def _fitted_for(cal: dict, space: SearchSpace) -> bool:
    """Whether the calibration's scope (recorded by the device's calibration job) is this space and size."""
    scope = cal.get("scope") or {}
    return (scope.get("space"), scope.get("resolution"), scope.get("num_classes"), scope.get("width_mult")) == \
        (space.name, space.resolution, space.num_classes, space.width_mult)


def ensure_calibration(client, table_id: str, space: SearchSpace, *, samples: int = DEFAULT_SAMPLES,
                       seed: int = 0, progress: bool = True,
                       say: Callable[[str], None] = print) -> dict:
    """The table's calibration for ``space``; fitted from ``samples`` measured random nets if missing."""
    cal = client.get_calibration(table_id)
    if cal and _fitted_for(cal, space):
        return cal
    if samples < 3:
        raise ValueError(f"table {table_id} has no calibration for {space.name} @ {space.resolution} px and "
                         f"{samples} networks cannot fit one (at least 3); run `search-client calibrate "
                         f"--profiler URL --table {table_id} --space {space.name} --resolution "
                         f"{space.resolution} --num-classes {space.num_classes}` or pass --calib-samples 20")
    from tqdm import tqdm

    why = "none yet" if not cal else "its calibration was fitted on other networks"
    say(f"table {table_id}: calibrating for {space.name} @ {space.resolution} px ({why}): the device "
        f"measures {samples} random networks")
    with tqdm(total=samples, desc="measuring calibration networks", unit="net", disable=not progress) as bar:
        def seen(job: dict) -> None:
            bar.update(max(0, int(job.get("done") or 0) - bar.n))

        cal = client.calibrate_table(table_id, space=space.name, resolution=space.resolution,
                                     width_mult=space.width_mult, num_classes=space.num_classes,
                                     samples=samples, seed=seed, progress=seen)
    say(f"calibration v{cal['version']} ({cal.get('model', 'scale')}): intercept {cal['intercept_ms']:.3f} ms, "
        f"scale {cal['scale']:.3f}, leave-one-out error {100 * (cal.get('loo_rmspe') or 0):.1f}% on "
        f"{cal['n_networks']} networks")
    return cal


def calibration_networks(client, cal: dict) -> list[NetworkOut]:
    """The measured networks the calibration was fitted on, as the device serves them, in its order."""
    nets = [client.get_network(net_id) for net_id in cal.get("networks") or []]
    return [n for n in nets if n.measured is not None]


def measured_ms(cal: dict, client=None) -> list[float]:
    """The measured medians of the calibration's networks: from the calibration itself where it carries them
    (``network_ms``: the yaml export writes them, for a search from the file with no service), else asked of
    the device that measured them. Empty when neither has them."""
    if cal.get("network_ms"):
        return [float(ms) for ms in cal["network_ms"]]
    if client is None:
        return []
    return [n.measured.median_ms for n in calibration_networks(client, cal)]


__all__ = ["DEFAULT_SAMPLES", "calibration_networks", "ensure_calibration", "measured_ms"]
