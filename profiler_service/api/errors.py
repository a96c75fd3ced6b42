"""Every bad input is a 4xx whose ``detail`` says which field is wrong and why; never a 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DataError, DBAPIError

from profiler_service.db.outage import RETRY_AFTER_S, is_outage
from profiler_service.services.errors import ServiceError
from shared.specs import SpecError

log = logging.getLogger(__name__)


class Problem(BaseModel):
    """Every error body: ``detail`` is one readable line; ``field`` and ``errors`` where they apply."""

    detail: str
    field: str | None = None
    errors: list[dict] | None = None


# Published for every route, so clients generated from the OpenAPI parse the errors we send.
ERROR_RESPONSES: dict = {code: {"model": Problem, "description": text} for code, text in (
    (401, "missing or wrong API key"), (403, "not served to this client"), (404, "not found"),
    (409, "conflicts with the current state"), (413, "body over the size limit"),
    (422, "bad input: detail says which field and why"),
    (503, "database unavailable: ask again after the Retry-After header's seconds"))}


def _loc(loc: tuple) -> str:
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] == "body":  # "resolution", not "body.resolution"
        parts = parts[1:]
    return ".".join(parts) or "body"


def _validation_detail(errors: list[dict]) -> str:
    return "; ".join(f"{_loc(tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in errors)


async def _spec_error(_: Request, exc: SpecError) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "field": exc.field}, status_code=422)


async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
    body = {"detail": exc.message}
    if field := getattr(exc, "field", None):
        body["field"] = field
    return JSONResponse(body, status_code=exc.status_code)


async def _request_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    # "detail" as one readable line; the structured list stays available for programs.
    structured = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
    return JSONResponse({"detail": _validation_detail(errors), "errors": structured}, status_code=422)


async def _pydantic_validation(_: Request, exc: ValidationError) -> JSONResponse:
    return JSONResponse({"detail": _validation_detail(list(exc.errors()))}, status_code=422)


async def _data_error(request: Request, exc: DataError) -> JSONResponse:
    # A value the database refuses (PostgreSQL: a NUL byte in a text value): bad input, not a server fault.
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200] if str(exc) else "invalid value"
    return JSONResponse({"detail": f"a value in the request cannot be stored: {reason}"}, status_code=422)


async def _database_error(request: Request, exc: DBAPIError) -> JSONResponse:
    """An outage is no fault of the request: 503 with Retry-After, logged once per outage. Answered here,
    not by the catch-all below, whose error middleware re-raises after answering and so drops a keep-alive
    connection."""
    if not is_outage(exc):
        return await _unexpected(request, exc)
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is not None:
        runtime.db.outage.noticed(exc)
    return JSONResponse({"detail": "database unavailable"}, status_code=503,
                        headers={"Retry-After": str(RETRY_AFTER_S)})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(SpecError, _spec_error)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(ValidationError, _pydantic_validation)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
