"""The SQL an answer costs: the service's SQLite transactions begin with the write lock
(backend/sqlite_engine.py), so another process cannot slip a write in between BEGIN and
the transaction's first write (what the no-op write of `credits.atomically` used to
guarantee), and a settle with nothing to refund reads no balance."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from quart import Quart
from tortoise import Tortoise
from tortoise.transactions import in_transaction

from backend.models import User
from backend.models.credits import ReservationState
from backend.services import credits
from backend.settings import Settings
from backend.sqlite_engine import takes_write_lock
from tests.support.accounts import create_account

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


async def test_settling_with_nothing_to_refund_reads_no_balance(
    app: Quart, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A free answer (the local model's) or one charged its whole hold refunds nothing:
    its settle skips the balance read a zero ledger entry used to cost."""
    account = await create_account(settings)
    reservation = await credits.atomically(lambda: credits.hold(account.id, 0))
    caplog.set_level(logging.DEBUG, logger="tortoise.db_client")
    caplog.clear()
    charged = await credits.atomically(
        lambda: credits.close_reservation(reservation, ReservationState.SETTLED, 0)
    )
    queries = [r.getMessage() for r in caplog.records if r.name == "tortoise.db_client"]
    assert charged == 0
    assert any("credit_reservations" in q for q in queries)
    assert not any('"users"' in q for q in queries), queries
