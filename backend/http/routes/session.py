"""Logging in and out: OAuth2 password grant, WeChat mini-program login, refresh, logout."""

from __future__ import annotations

from quart import Blueprint, current_app, request
from quart_schema import DataSource, validate_request, validate_response

from backend.errors import Unauthorized
from backend.http.documented_errors import document_errors
from backend.http.responses import ok
from backend.models.users import LoginKind
from backend.services import login_throttle, revocation, tokens, wechat
from backend.services.tokens import TokenPair
from backend.settings import Settings
from schemas.auth import (
    LoggedOut,
    OAuthErrorOut,
    PasswordGrant,
    RefreshIn,
    TokenOut,
    WechatLoginIn,
)
from schemas.envelope import Envelope

blueprint = Blueprint("session", __name__, url_prefix="/api/v1/session")


def settings() -> Settings:
    return current_app.config["SETTINGS"]


def token_out(pair: TokenPair) -> TokenOut:
    return TokenOut(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        token_type=pair.token_type,
        expires_in=pair.expires_in,
    )


@blueprint.post("/oauth2/token")
@document_errors(429)
@validate_request(PasswordGrant, source=DataSource.FORM)
@validate_response(TokenOut, 200)
@validate_response(OAuthErrorOut, 401)
async def password_token(data: PasswordGrant):
    """OAuth2 password grant. The answer is RFC 6749's top-level token fields, not enveloped.

    Wrong credentials give 401 with RFC 6749's `error`/`error_description` and the
    envelope's `code`/`message`, so both kinds of client read it. Too many wrong
    passwords from one address give 429 with Retry-After.
    """
    try:
        user = await login_throttle.login_with_password(
            data.username,
            data.password,
            request.remote_addr or "unknown",
            redis=current_app.config["REDIS"],
            settings=settings(),
        )
    except Unauthorized as error:
        body = OAuthErrorOut(
            error="invalid_grant",
            error_description=error.message,
            code=401,
            message=error.message,
        )
        return body, 401, {"WWW-Authenticate": "Bearer"}
    pair = await tokens.issue_token_pair(user, settings(), LoginKind.PASSWORD)
    return token_out(pair), 200, {"Cache-Control": "no-store"}


@blueprint.post("/refresh")
@document_errors(401)
@validate_request(RefreshIn)
@validate_response(Envelope[TokenOut])
async def refresh(data: RefreshIn):
    """Exchange a refresh token for a new pair; the old refresh token is revoked."""
    return ok(token_out(await tokens.rotate_refresh_token(data.refresh_token, settings())))


@blueprint.post("/logout")
@document_errors(401)
@validate_request(RefreshIn)
@validate_response(Envelope[LoggedOut])
async def logout(data: RefreshIn):
    """End the login: its refresh token and every access token it issued stop working
    now (401), and its open WebSockets and event streams are closed."""
    stored = await tokens.revoke_refresh_token(data.refresh_token)
    login_id = tokens.login_id_of(data.refresh_token) or stored.id
    redis = current_app.config["REDIS"]
    await revocation.revoke_login(redis, settings(), stored.user_id, login_id)
    return ok(LoggedOut())


@blueprint.post("/wechat/token")
@document_errors(401, 403, 429, 502, 503)
@validate_request(WechatLoginIn)
@validate_response(Envelope[TokenOut])
async def wechat_token(data: WechatLoginIn):
    """Log in with a mini-program `wx.login()` code; the first login creates the account."""
    user = await wechat.login(data.code, settings())
    return ok(token_out(await tokens.issue_token_pair(user, settings(), LoginKind.WECHAT)))


@blueprint.post("/wechat/refresh")
@document_errors(401)
@validate_request(RefreshIn)
@validate_response(Envelope[TokenOut])
async def wechat_refresh(data: RefreshIn):
    """Refresh a WeChat login; refresh tokens from password logins are refused."""
    pair = await tokens.rotate_refresh_token(data.refresh_token, settings(), LoginKind.WECHAT)
    return ok(token_out(pair))
