"""Tortoise's datetime parsing of SQLite rows with iso8601 (its fallback, as before) next to
ciso8601 (its accelerator, now a dependency), alternating round by round in one process.

SQLite stores datetimes as text; Tortoise's `DatetimeField.to_python_value` parses each
with `tortoise.fields.data.parse_datetime`, which is ciso8601's when that is installed and
iso8601's otherwise. A streamed answer's web reads carry six such values (the user row;
the session and its assistant: `lean_reads.user_by_id`, `owned_session`), and the worker
reads more. "old" patches iso8601's parser in; "new" is the parser as imported.

Prints CPU per value parsed, then per answer's two reads through the product's own code
(SQLite, the loop's read connection), old and new, and the ratio.

Usage: python -m bench.bench_datetime_parse [--rounds N] [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from unittest import mock

import iso8601
from tortoise.fields import data

from backend.database import close_database, open_database
from backend.models import Assistant, ChatSession, User
from backend.models.ids import new_id
from backend.models.lean_reads import owned_session, user_by_id
from bench.alternation import us_per_call
from bench.service import migrated_database

STORED = "2026-12-06 10:00:00.123456+00:00"  # as Tortoise writes a datetime to SQLite
BEFORE = functools.partial(iso8601.parse_date, default_timezone=None)


def side(old: bool) -> AbstractContextManager[object]:
    return mock.patch.object(data, "parse_datetime", BEFORE) if old else nullcontext()


async def compare(name: str, call: Callable[[], Awaitable[object]], rounds: int, runs: int) -> None:
    async def old() -> None:
        with side(True):
            await call()

    async def new() -> None:
        with side(False):
            await call()

    before, after = await us_per_call(old, new, rounds, runs)
    print(f"{name:<44} {before:8.2f} -> {after:7.2f} us CPU ({after / before:.2f}x)")


async def main(rounds: int, runs: int) -> None:
    if data.parse_datetime is BEFORE.func or isinstance(data.parse_datetime, functools.partial):
        raise SystemExit("ciso8601 is not installed: `pip install ciso8601` (pyproject.toml)")
    field = data.DatetimeField()

    async def one_value() -> None:
        for _ in range(10):
            field.to_python_value(STORED)

    with migrated_database("") as settings:
        await open_database(settings)
        try:
            user = await User.create(username=f"bench{new_id()[:8]}", credits=10**9)
            assistant = await Assistant.create(owner_id=user.id, name="b", llm={"model_name": "m"})
            session = await ChatSession.create(assistant_id=assistant.id, user_id=user.id)

            async def reads() -> None:
                await user_by_id(user.id)
                await owned_session(session.id, user.id)

            for _ in range(50):  # the first reads open the loop's connection: in neither figure
                await reads()
            await compare("ten stored datetimes, to_python_value", one_value, rounds, runs)
            await compare("an answer's user and session reads", reads, rounds, runs)
        finally:
            await close_database()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=300)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.runs))
