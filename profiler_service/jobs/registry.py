"""Which job kinds this worker runs, by the name stored in ``jobs.kind``.

A new kind is a module beside these, with params (an ``EngineParams`` subclass), a ``run(ctx, job)`` and a
``KIND = JobKind(name, params, run)``, listed in ``BUILT_IN`` (or given to ``register``)."""

from __future__ import annotations

from profiler_service.jobs import calibration, network, profile
from profiler_service.jobs.context import JobKind

BUILT_IN: tuple[JobKind, ...] = (profile.KIND, network.KIND, calibration.KIND)
KINDS: dict[str, JobKind] = {kind.name: kind for kind in BUILT_IN}


class UnknownKind(LookupError):
    pass


def register(kind: JobKind) -> JobKind:
    """Add a kind; a second kind under a taken name is refused (it would silently replace the first)."""
    if KINDS.get(kind.name, kind) is not kind:
        raise ValueError(f"job kind {kind.name!r} is already registered")
    KINDS[kind.name] = kind
    return kind


def job_kind(name: str) -> JobKind:
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownKind(f"no job kind {name!r} on this worker; known: {sorted(KINDS)}") from None
