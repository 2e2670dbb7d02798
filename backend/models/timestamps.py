"""A row's `updated_at` that starts equal to its `created_at`."""

from __future__ import annotations

import datetime
from typing import Any

from tortoise import fields


class UpdatedAtField(fields.DatetimeField):
    """`auto_now`, except that a new row's first value is its `created_at`, to the microsecond.

    Tortoise reads the clock once per field, so a new row's `updated_at` came out a few
    microseconds after its `created_at`; the RAGFlow shapes report both in milliseconds,
    and about one create in fifty straddled a millisecond, answering a fresh dataset with
    `update_time` one past its `create_time`. Every later save takes the clock as before.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(auto_now=True, **kwargs)

    def to_db_value(self, value: Any, instance: Any) -> Any:
        created = getattr(instance, "created_at", None)
        if getattr(instance, "_saved_in_db", None) is False and isinstance(
            created, datetime.datetime
        ):
            setattr(instance, self.model_field_name, created)
            return created
        return super().to_db_value(value, instance)
