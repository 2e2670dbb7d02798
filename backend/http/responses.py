"""Building the `{"code": 0, "data": ...}` envelope and error bodies."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from quart import Response, g, jsonify

from schemas.envelope import Envelope, ErrorBody


def ok(data: Any, status: int = 200) -> tuple[Envelope[Any], int]:
    return Envelope(data=data), status


def error_response(status: int, message: str, code: int | None = None) -> Response:
    body = ErrorBody(
        code=code if code is not None else status,
        message=message,
        request_id=getattr(g, "request_id", None),
    )
    response = jsonify(body.model_dump())
    response.status_code = status
    return response


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")
