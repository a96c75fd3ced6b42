from __future__ import annotations

from fastapi import APIRouter

from profiler_service.services.spaces import list_spaces
from shared.schemas import SpaceOut

router = APIRouter(prefix="/v1", tags=["spaces"])


@router.get("/spaces")
def spaces() -> list[SpaceOut]:
    """Known search spaces, described at their default resolution / width / classes."""
    return list_spaces()
