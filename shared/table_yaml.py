"""The calibration a yaml table file carries: one comment line at its head.

The published ProxylessNAS / once-for-all readers load the yaml into ``{KEY: {count, mean, var}}`` and look
keys up in it; a top-level key of ours would be one more "op" to every reader that walks the file, but a
comment is invisible to all of them. So the table's calibration travels as
``# calibration: {json on one line}``, and a search that reads the file back predicts what the device's
service predicts (the calibrated value), not the raw op sum.
"""

from __future__ import annotations

import json

CALIBRATION_PREFIX = "# calibration: "


def calibration_line(calibration: dict) -> str:
    """The comment line (newline included) that carries ``calibration`` in a yaml table file."""
    return CALIBRATION_PREFIX + json.dumps(calibration, separators=(",", ":"), sort_keys=True) + "\n"


def read_calibration_line(text: str, where: str = "the table file") -> dict | None:
    """The calibration of a yaml table file's leading comments, or None when it carries none."""
    for line in text.splitlines():
        if not line.startswith("#"):
            if line.strip():  # the comments at the head are over
                return None
            continue
        if line.startswith(CALIBRATION_PREFIX):
            try:
                calibration = json.loads(line[len(CALIBRATION_PREFIX):])
            except ValueError as e:
                raise ValueError(f"{where}: the '# calibration:' line is not one JSON object: {e}") from None
            if not isinstance(calibration, dict):
                raise ValueError(f"{where}: the '# calibration:' line holds {type(calibration).__name__}, "
                                 "not a JSON object")
            return calibration
    return None


__all__ = ["CALIBRATION_PREFIX", "calibration_line", "read_calibration_line"]
