from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from profiler_service.api.deps import RuntimeDep, SessionDep
from profiler_service.clock import history
from profiler_service.services.devices import get_device
from shared.schemas import ClockOut, DeviceOut

router = APIRouter(prefix="/v1", tags=["device"])


@router.get("/device")
def device(session: SessionDep, runtime: RuntimeDep) -> DeviceOut:
    """This worker's device: name, fingerprint (CPU, cores, OS, library versions) and usable backends."""
    dev = get_device(session, runtime.device_name)
    return DeviceOut(name=runtime.device_name, fingerprint=dev.fingerprint if dev else {},
                     backends=runtime.backends)


@router.get("/device/clocks")
def clocks(session: SessionDep, runtime: RuntimeDep,
           bursts: Annotated[int, Query(ge=0, le=history.KEEP, description="bursts per configuration")] = 20,
           ) -> list[ClockOut]:
    """Each configuration's nominal (the reference's quiet speed its figures are scaled to, and its version)
    with the bursts behind it, newest first, and how far the last hour's unshared bursts lay apart: the
    device's own floor under two latencies read minutes apart."""
    return history.clocks(session, runtime.device_id, bursts)
