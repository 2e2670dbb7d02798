"""WeChat mini-program login through the code2session contract."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from backend.errors import (
    ApiError,
    BadGateway,
    Conflict,
    Forbidden,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from backend.models import User
from backend.services.users import create_user
from backend.settings import Settings

log = logging.getLogger("sluice.wechat")

CODE2SESSION_PATH = "/sns/jscode2session"
# A character registration refuses, so a WeChat account can never collide with a chosen name.
USERNAME_PREFIX = "wechat:"
USERNAME_MAX = 64


@dataclass(frozen=True)
class WechatSession:
    """What code2session proves. The session_key stays here: it is never sent to clients."""

    openid: str
    session_key: str
    unionid: str | None


ERRORS: dict[int, tuple[type[ApiError], str]] = {
    40029: (Unauthorized, "WeChat rejected the login code: call wx.login() again for a new one"),
    40163: (Unauthorized, "This WeChat login code was already used: call wx.login() again"),
    45011: (TooManyRequests, "WeChat login rate limit reached: wait a minute and retry"),
    40226: (Forbidden, "WeChat flagged this account as high-risk and refused the login"),
    -1: (BadGateway, "WeChat is busy: retry in a few seconds"),
}


def raise_for_errcode(errcode: int, errmsg: str) -> None:
    error, message = ERRORS.get(
        errcode, (BadGateway, f"WeChat login failed (errcode {errcode}: {errmsg})")
    )
    raise error(message)


def parse_answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON object WeChat answered (often labelled text/plain), or 502."""
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("errcode", 0), int):
        log.warning("code2session unreadable answer, status %s", response.status_code)
        raise BadGateway("WeChat returned an unreadable answer: retry in a few seconds")
    return body


async def code2session(code: str, settings: Settings) -> WechatSession:
    """Exchange a `wx.login()` code for the user's openid, mapping WeChat errors to statuses."""
    if not (settings.wechat_appid and settings.wechat_secret):
        raise ServiceUnavailable(
            "WeChat login is not configured: set WECHAT_APPID and WECHAT_SECRET"
        )
    params = {
        "appid": settings.wechat_appid,
        "secret": settings.wechat_secret,
        "js_code": code,
        "grant_type": "authorization_code",
    }
    try:
        async with httpx.AsyncClient(
            base_url=settings.wechat_base_url, timeout=settings.wechat_timeout_seconds
        ) as client:
            response = await client.get(CODE2SESSION_PATH, params=params)
    except httpx.HTTPError as exc:
        log.warning("code2session unreachable: %r", exc)
        raise BadGateway("WeChat could not be reached: retry in a few seconds") from exc
    body = parse_answer(response)
    errcode = body.get("errcode") or 0
    if errcode:
        raise_for_errcode(errcode, str(body.get("errmsg", "")))
    if response.status_code != 200 or not body.get("openid") or not body.get("session_key"):
        raise BadGateway("WeChat returned an incomplete answer: retry in a few seconds")
    return WechatSession(
        openid=str(body["openid"]),
        session_key=str(body["session_key"]),
        unionid=body.get("unionid"),
    )


async def login(code: str, settings: Settings) -> User:
    """The account of this WeChat user, created on first login."""
    session = await code2session(code, settings)
    user = await User.get_or_none(wechat_openid=session.openid)
    if user is None:
        user = await create_or_get(session, settings)
    elif session.unionid and user.wechat_unionid != session.unionid:
        user.wechat_unionid = session.unionid
        await user.save(update_fields=["wechat_unionid"])
    if user.disabled:
        raise Unauthorized("This account is disabled")
    return user


async def create_or_get(session: WechatSession, settings: Settings) -> User:
    try:
        return await create_user(
            settings,
            (USERNAME_PREFIX + session.openid)[:USERNAME_MAX],
            None,
            nickname="WeChat user",
            wechat_openid=session.openid,
            wechat_unionid=session.unionid,
        )
    except Conflict:
        # Two first logins raced; the other one created the account.
        return await User.get(wechat_openid=session.openid)
