"""Small shared request shapes."""

from pydantic import BaseModel, Field


class Pagination(BaseModel):
    page: int = Field(1, ge=1)
    page_size: int = Field(30, ge=1, le=1000)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size
