from __future__ import annotations

from fastapi import APIRouter, status

from profiler_service.api.deps import ApiKey, RuntimeDep, SessionDep, SettingsDep
from profiler_service.services import networks
from profiler_service.services.devices import get_device
from shared.schemas import NetworkCreate, NetworkOut

router = APIRouter(prefix="/v1/networks", tags=["networks"])


@router.post("", status_code=status.HTTP_202_ACCEPTED, dependencies=[ApiKey])
def create_network(req: NetworkCreate, session: SessionDep, runtime: RuntimeDep,
                   settings: SettingsDep) -> NetworkOut:
    """Measure a whole architecture end to end on this device (a job) next to the table's prediction."""
    device = get_device(session, runtime.device_name)
    net = networks.create_network_job(session, req, device=device, limits=settings.limits, backends=runtime.backends)
    return networks.network_out(session, net)


@router.get("/{network_id}")
def get_network(network_id: str, session: SessionDep) -> NetworkOut:
    """Measured stats (once done), the table's prediction as of now, and keys the table lacks."""
    return networks.network_out(session, networks.get_network(session, network_id))
