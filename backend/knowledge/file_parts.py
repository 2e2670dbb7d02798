"""What an upload hands to knowledge: one file part of a request, streamed to a sink.

The HTTP layer decodes multipart bodies (`backend/http/multipart_files.py`) and the
knowledge layer stores what arrives (`document_uploads`, `document_parser`); the part
and the sink's shape live here, below both, so the decoder depends on them rather than
knowledge depending on the HTTP layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class FilePart:
    field: str
    filename: str
    content_type: str | None


class FileSink(Protocol):
    """Receives each file part: `start`, its bytes through `write`, then `finish`."""

    async def start(self, part: FilePart) -> None: ...

    async def write(self, data: bytes) -> None: ...

    async def finish(self) -> None: ...
