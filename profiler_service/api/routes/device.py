from __future__ import annotations

from fastapi import APIRouter

from profiler_service.api.deps import RuntimeDep, SessionDep
from profiler_service.services.devices import get_device
from shared.schemas import DeviceOut

router = APIRouter(prefix="/v1", tags=["device"])


@router.get("/device")
def device(session: SessionDep, runtime: RuntimeDep) -> DeviceOut:
    """This worker's device: name, fingerprint (CPU, cores, OS, library versions) and usable backends."""
    dev = get_device(session, runtime.device_name)
    return DeviceOut(name=runtime.device_name, fingerprint=dev.fingerprint if dev else {},
                     backends=runtime.backends)
