"""Accounts on the wire: registration, the user record, profile and admin updates."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, StrictBool

from schemas.common import Pagination, RequestBody

USERNAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{2,31}$"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
PASSWORD_MIN = 8
PASSWORD_MAX = 128


class UserCreate(RequestBody):
    username: str = Field(
        pattern=USERNAME_PATTERN,
        description="3-32 characters: a letter, then letters, digits, '_', '.' or '-'",
        examples=["alice"],
    )
    password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)


class UserOut(BaseModel):
    id: int
    username: str
    nickname: str
    email: str | None
    level: int = Field(description="0 user, 2 admin")
    disabled: bool
    credits: int
    has_avatar: bool
    created_at: datetime


class ProfileUpdate(RequestBody):
    """Only the fields sent are changed; a new password needs the current one."""

    nickname: str | None = Field(None, min_length=1, max_length=64)
    email: str | None = Field(None, max_length=255, pattern=EMAIL_PATTERN)
    password: str | None = Field(None, min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)
    current_password: str | None = Field(None, max_length=PASSWORD_MAX)


class AdminUserUpdate(RequestBody):
    """Only the fields sent are changed. Credits are adjusted through the credits API."""

    nickname: str | None = Field(None, min_length=1, max_length=64)
    level: Literal[0, 2] | None = Field(None, description="0 user, 2 admin")
    disabled: StrictBool | None = None


class UserQuery(Pagination):
    username: str | None = Field(None, max_length=64, description="Substring of the username")


class UserPage(BaseModel):
    items: list[UserOut]
    total: int
    page: int
    page_size: int


class AvatarUpload(BaseModel):
    """Multipart form of the avatar upload; a raw image body with its content type also works."""

    file: bytes = Field(json_schema_extra={"format": "binary"})
