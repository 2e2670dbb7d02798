"""Ids on the wire, checked by their real format before anything reaches SQL.

Public ids are `uuid4().hex` (backend/models/ids.py makes them): 32 lowercase hex
characters. User ids are SQL `INTEGER`s, so at most 2**31 - 1 on every database we run
on. Anything else cannot name a row, so it is refused at the edge (422 in a body or a
query, 404 in a path) instead of reaching the database, where an over-long string or an
out-of-range integer fails as a 500.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

from schemas.common import SchemaSays

PUBLIC_ID_PATTERN = "[0-9a-f]{32}"
PUBLIC_ID_RE = re.compile(PUBLIC_ID_PATTERN)
PUBLIC_ID_HINT = "ids are 32 lowercase hexadecimal characters"
USER_ID_MAX = 2**31 - 1
# The most ids one request may name (a batch delete, a status query).
MAX_BATCH_IDS = 1000

PublicId = Annotated[
    str,
    StringConstraints(pattern=f"^{PUBLIC_ID_PATTERN}$"),
    Field(description=f"An id: {PUBLIC_ID_HINT}", examples=["0f8fad5bd9cb469fa16570867728950e"]),
]
UserId = Annotated[int, Field(ge=1, le=USER_ID_MAX, description="A user's id")]


def is_public_id(value: object) -> bool:
    return isinstance(value, str) and PUBLIC_ID_RE.fullmatch(value) is not None


def is_user_id(value: int) -> bool:
    return 1 <= value <= USER_ID_MAX


def no_duplicates(ids: list[Any] | None) -> list[Any] | None:
    duplicates = [str(item) for item, count in Counter(ids or []).items() if count > 1]
    if duplicates:
        raise ValueError(f"Duplicate ids: {', '.join(duplicates)}")
    return ids


# Ids in a body name each thing once: a duplicate is a 422 naming it, and the OpenAPI
# document says so. Bounds (how many) are the field's own.
UniqueIds = Annotated[list[PublicId], AfterValidator(no_duplicates), SchemaSays(uniqueItems=True)]
