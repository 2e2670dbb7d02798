"""Which driver errors name the database as unavailable (a retried step, a 503), as they
are raised on a connection a PostgreSQL restart broke mid-operation (seen settling
answers under bench/bench_chaos.py's faults: the job crashed and the reaper threw the
finished answer away as `worker_lost`), and which are bugs (not disguised)."""

from __future__ import annotations

import asyncpg
import pytest

from backend.dependency_failures import DATABASE_UNAVAILABLE, dependency_failure


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.InterfaceError("cannot perform operation: connection is closed"),
        asyncpg.InterfaceError(
            "cannot call Connection.transaction(): connection has been released back to the pool"
        ),
        asyncpg.InternalClientError(
            "cannot switch to state 15; another operation (2) is in progress"
        ),
    ],
)
def test_a_broken_connection_is_the_database_unavailable(error: Exception) -> None:
    try:
        raise RuntimeError("the transaction failed") from error
    except RuntimeError as wrapped:
        assert dependency_failure(wrapped) is DATABASE_UNAVAILABLE


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.InterfaceError("the server expects 2 arguments for this query, 1 was passed"),
        asyncpg.InternalClientError("unexpected row description"),
    ],
)
def test_a_misuse_is_not_an_outage(error: Exception) -> None:
    assert dependency_failure(error) is None
