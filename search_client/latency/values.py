"""What a latency must be before a search uses it, wherever it came from (the service, a file, the cache).

A latency is a finite number of milliseconds above zero; exactly zero only for an op with nothing to
compute: the zero op (never profiled) and identity (no kernel of its own, so the device times it at 0).
One NaN in a table made every prediction NaN (a search printed ``predicted latency nan ms`` and exited 0)
and kept the derive loop swapping forever; a negative one rewards the op it belongs to. Such a table is
refused whole, naming its first bad entry, and never cached.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping

from shared.specs import IDENTITY, ZERO

_FREE_PREFIXES = (f"{ZERO}-", f"{IDENTITY}-")  # keys are "<op type>-input:..."
_SHOWN = reprlib.Repr()
_SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxdict, _SHOWN.maxlist, _SHOWN.maxlevel = 60, 60, 3, 3, 2


def excerpt(value: object) -> str:
    """A bounded repr for a one-line message: a bad value may be a megabyte of text."""
    return _SHOWN.repr(value)


class BadLatencyError(ValueError):
    """A latency that is not one; the message names the entry and what is wrong with it."""


def latency_problem(key: str, value: object, *, zero_ok: bool = False) -> str | None:
    """Why ``value`` is no latency of ``key`` (None when it is one). ``zero_ok``: 0 is fine whatever the op
    (a spread such as ``std_ms``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"not a number ({excerpt(value)})"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "infinite"
    if value < 0:
        return f"negative ({value:g} ms)"
    if value == 0 and not (zero_ok or key.startswith(_FREE_PREFIXES)):
        return "0 ms, and only an op with nothing to compute (zero, identity) costs nothing"
    return None


def check_latency(key: str, value: object, where: str, *, field: str | None = None, zero_ok: bool = False) -> float:
    """``value`` as a float, or BadLatencyError naming ``where``, the entry and the field."""
    problem = latency_problem(key, value, zero_ok=zero_ok)
    if problem is not None:
        name = f"{key!r}" + (f" {field}" if field else "")
        raise BadLatencyError(f"{where}: entry {name} is {problem}; a latency must be a finite number of ms above 0")
    return float(value)  # type: ignore[arg-type]


def check_entries(entries: Mapping[str, object], where: str) -> dict[str, float]:
    """Every entry checked; the error names the first bad one and how many there are."""
    bad = [(k, p) for k, v in entries.items() if (p := latency_problem(k, v)) is not None]
    if bad:
        key, problem = bad[0]
        more = f" ({len(bad) - 1} more entries are no latency either)" if len(bad) > 1 else ""
        raise BadLatencyError(f"{where}: entry {key!r} is {problem}{more}; a latency must be a finite number of "
                              "ms above 0")
    return {k: float(v) for k, v in entries.items()}  # type: ignore[arg-type]


__all__ = ["BadLatencyError", "check_entries", "check_latency", "excerpt", "latency_problem"]
