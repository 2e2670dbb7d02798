"""One byte range of a download (RFC 9110 §14): `Range: bytes=first-last`, `first-` or
`-suffix`, served as 206 with `Content-Range` from a ranged read of the storage, so a
client can resume a large download or fetch part of it without the whole file passing
through the web process.

A header that is malformed, names several ranges, or is not in bytes is ignored and the
whole file served (200), as RFC 9110 allows; one that starts past the end is a 416 with
`Content-Range: bytes */<size>`.
"""

from __future__ import annotations

import re

from quart import Response

from backend.http.responses import error_response

SINGLE_RANGE = re.compile(r"bytes=(\d{0,18})-(\d{0,18})")


class RangeNotSatisfiable(Exception):
    """The one range asked for lies outside the file."""


def requested_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of the one range asked for; None for the whole file."""
    match = SINGLE_RANGE.fullmatch((header or "").strip())
    if match is None or not (match[1] or match[2]):
        return None
    if match[1]:
        start = int(match[1])
        if match[2] and int(match[2]) < start:
            return None  # last before first: not a valid range
        end = int(match[2]) + 1 if match[2] else size
    else:
        suffix = int(match[2])
        if suffix == 0:
            raise RangeNotSatisfiable
        start, end = max(0, size - suffix), size
    if start >= size:
        raise RangeNotSatisfiable
    return start, min(end, size)


def range_not_satisfiable(size: int) -> Response:
    response = error_response(
        416, f"Range not satisfiable: the file has {size} bytes (ask for bytes=0-{size - 1})"
    )
    response.headers["Content-Range"] = f"bytes */{size}"
    return response
