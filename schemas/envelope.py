"""The response envelope every JSON endpoint (except OAuth2 token grants) uses."""

from typing import Generic, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    code: int = 0
    data: T


class ErrorBody(BaseModel):
    code: int
    message: str
    request_id: str | None = None


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    page: int
    page_size: int
