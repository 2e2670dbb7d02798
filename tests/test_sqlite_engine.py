"""The service's SQLite transactions begin with the write lock (backend/sqlite_engine.py):
another process cannot slip a write in between BEGIN and the transaction's first write,
which is what the no-op write of `credits.atomically` used to guarantee."""

from __future__ import annotations

import sqlite3

import pytest
from quart import Quart
from tortoise import Tortoise
from tortoise.transactions import in_transaction

from backend.models import User
from backend.sqlite_engine import takes_write_lock

pytestmark = pytest.mark.sqlite_only


def other_process_write(path: str) -> None:
    """A write from another connection that does not wait for the lock."""
    other = sqlite3.connect(path, timeout=0)
    try:
        other.execute("UPDATE users SET credits = credits WHERE 0")
        other.commit()
    finally:
        other.close()


async def test_a_transaction_holds_the_write_lock_before_its_first_statement(app: Quart) -> None:
    path = Tortoise.get_connection("default").filename
    other_process_write(path)  # free outside a transaction
    async with in_transaction() as connection:
        assert takes_write_lock(connection)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other_process_write(path)
        await User.filter(id=-1).count()
    other_process_write(path)
