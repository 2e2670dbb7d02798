"""Small shared request shapes."""

from pydantic import BaseModel, Field

# Pages past the data are empty, not errors; this bound only keeps the SQL OFFSET
# ((page - 1) * page_size) a number every database accepts, instead of a 500.
MAX_PAGE = 1_000_000


class Pagination(BaseModel):
    """Every paginated list's `page` and `page_size`; lists with another default or
    maximum page size override `page_size` only."""

    page: int = Field(1, ge=1, le=MAX_PAGE)
    page_size: int = Field(30, ge=1, le=1000)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size
