"""Uploaded chat images: the multipart form and the record returned."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from quart_schema.pydantic import File


class UploadForm(BaseModel):
    file: File


class UploadOut(BaseModel):
    id: str
    content_type: str
    size: int
    width: int
    height: int
    created_at: datetime
