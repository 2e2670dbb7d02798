"""Access tokens signed with our own key but with claims we never issue are refused (401).

A subject that is not a user id as issued (non-ASCII digits, leading zeros, a number
past the id column) was a 500 or, worse, read as another number; a token without `exp`
would have been valid forever.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import websockets
from quart.testing import QuartClient

from backend.services.tokens import ALGORITHM
from backend.settings import Settings
from tests.support.accounts import Account
from tests.support.live_server import LiveServer

ME = "/api/v1/users/me"


def signed(settings: Settings, **claims: Any) -> str:
    """A token signed with the test secret: an access token's claims, overridden by `claims`
    (a claim set to None is left out)."""
    now = datetime.now(UTC)
    base: dict[str, Any] = {
        "typ": "access",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "jti": "test",
    }
    base.update(claims)
    return jwt.encode(
        {k: v for k, v in base.items() if v is not None}, settings.secret_key, algorithm=ALGORITHM
    )


async def status_of(client: QuartClient, token: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
    return response.status_code, await response.get_json()


async def test_a_well_formed_token_still_works(
    client: QuartClient, settings: Settings, owner: Account
) -> None:
    status, body = await status_of(client, signed(settings, sub=str(owner.id)))
    assert status == 200 and body["data"]["id"] == owner.id


@pytest.mark.parametrize(
    "subject",
    [
        "9223372036854775807",
        "9" * 20,
        str(2**31),
        "²",  # str.isdigit() says yes, int() fails
        "١٢",  # Arabic-Indic digits: int() reads 12
        "-1",
        "1e3",
        "",
        " 1",
        12,
        None,
    ],
)
async def test_a_subject_that_is_not_a_user_id_as_issued_is_401(
    client: QuartClient, settings: Settings, subject: Any
) -> None:
    status, body = await status_of(client, signed(settings, sub=subject))
    assert (status, body["code"]) == (401, 401), body


ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.mark.parametrize(
    "spell",
    [lambda user_id: f"00{user_id}", lambda user_id: str(user_id).translate(ARABIC_INDIC)],
    ids=["leading-zeros", "arabic-indic-digits"],
)
async def test_another_spelling_of_a_user_id_does_not_name_the_user(
    client: QuartClient, settings: Settings, owner: Account, spell: Any
) -> None:
    """`int()` reads both as the owner's id; only the form we issue is accepted."""
    status, _ = await status_of(client, signed(settings, sub=spell(owner.id)))
    assert status == 401


async def test_a_token_without_exp_is_refused(
    client: QuartClient, settings: Settings, owner: Account
) -> None:
    status, body = await status_of(client, signed(settings, sub=str(owner.id), exp=None))
    assert (status, body["code"]) == (401, 401)


async def test_over_the_websocket_a_huge_subject_is_closed_4401(
    live_processes: LiveServer, live_settings: Settings
) -> None:
    token = signed(live_settings, sub="9" * 20)
    async with websockets.connect(f"{live_processes.ws_url}?access_token={token}") as ws:
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert (reply["type"], reply["code"]) == ("error", 401)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
