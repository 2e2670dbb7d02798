"""What an answer's hot path spends (issue 16: the fixed cost per answer): SQL statements,
tokenizing, token checks.

Each statement is a round trip (on SQLite a hop to aiosqlite's thread and back) and,
under load, a turn in the queue for the process's one connection. These tests count
what Tortoise sends (its `tortoise.db_client` log of every query) and check the result
is what the longer path gave.
"""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from quart.testing import QuartClient

from backend.errors import Unauthorized
from backend.models import CreditEntry, CreditReservation, Task
from backend.models.credits import CreditReason, ReservationState
from backend.models.tasks import TaskState
from backend.providers import tokens
from backend.services import tokens as tokens_module
from backend.services.tokens import ALGORITHM, decode_access_claims, verified_claims
from backend.settings import Settings
from backend.signing_key import signing_key
from tests.support.accounts import Account, create_account
from tests.support.ledger import assert_ledger_balanced, balance_of, reserve, settle
from tests.support.query_log import DML, logged_statements
from workers.jobs.chat import claim


@pytest.fixture
async def member(client: QuartClient, settings: Settings) -> Account:
    return await create_account(settings, password=False, credits=100)


async def test_a_claim_is_one_statement_and_returns_the_claimed_row(member: Account) -> None:
    task = await Task.create(
        user_id=member.id, model="m", request={"messages": [{"role": "user", "content": "hé"}]}
    )
    with logged_statements(DML) as statements:
        claimed = await claim(task.id)
    assert len(statements) == 1, statements
    stored = await Task.get(id=task.id)
    assert claimed is not None
    assert claimed.state is TaskState.RUNNING and claimed.attempts == 1
    assert claimed.request == stored.request == task.request
    assert claimed.started_at == stored.started_at and claimed.created_at == stored.created_at
    with logged_statements(DML) as statements:
        assert await claim(task.id) is None  # not queued any more: nothing claimed
    assert len(statements) == 1
    assert (await Task.get(id=task.id)).attempts == 1


async def test_settling_within_the_hold_reads_no_row_before_writing(member: Account) -> None:
    reservation_id = await reserve(member.id, 40)
    assert await balance_of(member.id) == 60
    with logged_statements(DML) as statements:
        assert await settle(reservation_id, 15) == 15
    # The reservation's UPDATE … RETURNING, the balance's UPDATE … RETURNING, the
    # ledger row: no SELECT.
    assert len(statements) == 3, statements
    assert not [sql for sql in statements if sql.startswith("SELECT")]
    assert await balance_of(member.id) == 85
    held = await CreditReservation.get(id=reservation_id)
    assert held.state is ReservationState.SETTLED and held.charged == 15
    refund = await CreditEntry.filter(user_id=member.id, reason=CreditReason.RELEASE).first()
    assert refund is not None and refund.delta == 25 and refund.balance_after == 85
    # A repeat call changes nothing and reports the charge.
    assert await settle(reservation_id, 30) == 15
    assert await balance_of(member.id) == 85
    await assert_ledger_balanced()


async def test_a_charge_above_the_hold_is_capped(member: Account) -> None:
    reservation_id = await reserve(member.id, 20)
    assert await settle(reservation_id, 35) == 20
    assert await balance_of(member.id) == 80
    await assert_ledger_balanced()


async def test_holding_nothing_reads_and_moves_nothing(member: Account) -> None:
    with logged_statements(DML) as statements:
        reservation_id = await reserve(member.id, 0)
    assert [sql.split(" ", 1)[0] for sql in statements] == ["INSERT"], statements
    assert (await CreditReservation.get(id=reservation_id)).amount == 0
    assert not await CreditEntry.filter(user_id=member.id, reason=CreditReason.RESERVE)
    assert await settle(reservation_id, 0) == 0


def test_a_text_counted_again_is_not_tokenized_again() -> None:
    text = "A history message every later turn of its session counts again. " * 3
    expected = tokens.encode_count(text)
    tokens.cached_count.cache_clear()
    assert tokens.count_tokens(text) == expected
    assert tokens.count_tokens(text) == expected
    info = tokens.cached_count.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    long_text = "x " * tokens.COUNT_CACHE_MAX_CHARS
    assert tokens.count_tokens(long_text) == tokens.encode_count(long_text)
    assert tokens.cached_count.cache_info().currsize == 1  # long texts are not kept


def test_a_token_is_verified_once_and_its_expiry_checked_every_request(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    claims = {"sub": "7", "typ": "access", "sid": uuid.uuid4().hex, "exp": int(now) + 60}
    token = jwt.encode(claims, signing_key(settings), algorithm=ALGORITHM)
    forged = jwt.encode(claims, "another-key-long-enough-for-hs256-0123456789", algorithm=ALGORITHM)
    verified_claims.cache_clear()
    assert decode_access_claims(token, settings).user_id == 7
    assert decode_access_claims(token, settings).user_id == 7
    assert verified_claims.cache_info().hits == 1
    for _ in range(2):  # a refused token is not remembered: refused every time
        with pytest.raises(Unauthorized, match="Invalid access token"):
            decode_access_claims(forged, settings)
    assert verified_claims.cache_info().currsize == 1
    monkeypatch.setattr(tokens_module.time, "time", lambda: now + 61)
    with pytest.raises(Unauthorized, match="expired"):
        decode_access_claims(token, settings)
