"""The overview page at ``/``: plain HTML, CSS and JS shipped in the package (profiler_service/ui), no
build step, nothing fetched from outside. It reads the same JSON API as every other client."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

UI_DIR = Path(__file__).resolve().parents[2] / "ui"
MEDIA_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    return FileResponse(UI_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/ui/{name}")
def asset(name: str) -> FileResponse:
    path = UI_DIR / name
    # only the files of that folder, by plain name: no path separators, no dot files
    if "/" in name or name.startswith(".") or path.suffix not in MEDIA_TYPES or not path.is_file():
        raise HTTPException(404, f"no such page asset: {name}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers={"Cache-Control": "no-cache"})
