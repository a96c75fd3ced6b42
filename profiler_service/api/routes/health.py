from __future__ import annotations

from fastapi import APIRouter

from profiler_service.api.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(runtime: RuntimeDep) -> dict:
    """Liveness: the process answers; says whether its worker thread is running."""
    worker = runtime.worker
    return {"status": "ok", "device": runtime.device_name, "worker": bool(worker and worker.alive)}
