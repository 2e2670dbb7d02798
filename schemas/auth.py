"""Credentials on the wire: OAuth2 password grant, refresh tokens, WeChat login, API keys."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from schemas.common import RequestBody


class PasswordGrant(BaseModel):
    """RFC 6749 section 4.3 form fields; `grant_type` may be omitted."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=128)
    grant_type: str | None = Field(None, pattern="^password$")
    scope: str | None = None


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires")


class OAuthErrorOut(BaseModel):
    """RFC 6749 section 5.2 error fields next to the envelope's code and message."""

    error: str
    error_description: str
    code: int
    message: str


class RefreshIn(RequestBody):
    refresh_token: str = Field(min_length=1, max_length=512)


class LoggedOut(BaseModel):
    revoked: bool = True


class WechatLoginIn(RequestBody):
    code: str = Field(
        min_length=1, max_length=256, description="The code from the mini-program's wx.login()"
    )


class ApiKeyCreate(RequestBody):
    name: str = Field(min_length=1, max_length=128, examples=["laptop script"])


class ApiKeyOut(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="The first characters of the key, to recognise it")
    created_at: datetime
    last_used_at: datetime | None


class ApiKeyCreated(BaseModel):
    id: str
    name: str
    prefix: str
    key: str = Field(description="The secret key; shown only in this response")
    created_at: datetime


class ApiKeyRevoked(BaseModel):
    id: str
    revoked: bool = True
