"""Tortoise parses SQLite's stored datetimes with ciso8601 (a dependency since issue 16's
sixth pass: 0.2 µs a value against iso8601's 12, bench/bench_datetime_parse.py), and the
values read back are what iso8601 gave: the same instant, aware, in the default zone."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta, timezone

import ciso8601
import iso8601
import pytest
from tortoise.fields import data

from backend.models import User
from backend.models.lean_reads import user_by_id
from tests.support.accounts import create_account

BEFORE = functools.partial(iso8601.parse_date, default_timezone=None)


def test_tortoise_parses_with_ciso8601() -> None:
    assert data.parse_datetime is ciso8601.parse_datetime


@pytest.mark.parametrize(
    "stored",
    [
        "2026-12-06 10:00:00.123456+00:00",  # as Tortoise writes them to SQLite
        "2026-12-06 10:00:00+00:00",
        "2026-12-06T10:00:00.5",  # naive: made aware in the default zone
        "2026-12-06 12:00:00.000001+02:00",
    ],
)
def test_parsed_values_are_iso8601s(stored: str) -> None:
    field = data.DatetimeField()
    new = field.to_python_value(stored)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data, "parse_datetime", BEFORE)
        old = field.to_python_value(stored)
    assert new == old and new.utcoffset() == old.utcoffset() == timedelta(0)
    assert new.tzinfo is not None


async def test_a_row_reads_back_its_datetimes(client, settings) -> None:
    account = await create_account(settings, password=False)
    written = datetime(2026, 12, 6, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    await User.filter(id=account.id).update(created_at=written)
    read = await user_by_id(account.id)
    assert read.created_at == written and read.created_at.utcoffset() == timedelta(0)
    assert read.created_at == written.astimezone(UTC)
