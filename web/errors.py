"""JSON error answers of the browser API: `{"error": message}` with the status that fits."""

from __future__ import annotations

from starlette.responses import JSONResponse


def error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def bad_request(message: str) -> JSONResponse:
    return error(message, 400)


def not_found(message: str) -> JSONResponse:
    return error(message, 404)


def conflict(message: str) -> JSONResponse:
    return error(message, 409)
