"""Accounts and the credentials that authenticate them."""

from enum import IntEnum, StrEnum

from tortoise import fields
from tortoise.models import Model

from backend.models.timestamps import UpdatedAtField


class Level(IntEnum):
    USER = 0
    ADMIN = 2


class LoginKind(StrEnum):
    PASSWORD = "password"
    WECHAT = "wechat"


class User(Model):
    id = fields.IntField(primary_key=True)
    username = fields.CharField(max_length=64, unique=True)
    password_hash = fields.CharField(max_length=255, null=True)
    nickname = fields.CharField(max_length=64, default="")
    email = fields.CharField(max_length=255, null=True)
    level = fields.IntField(default=Level.USER)
    disabled = fields.BooleanField(default=False)
    credits = fields.BigIntField(default=0)
    wechat_openid = fields.CharField(max_length=128, unique=True, null=True)
    wechat_unionid = fields.CharField(max_length=128, null=True)
    avatar_updated_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = UpdatedAtField()

    class Meta:
        table = "users"

    @property
    def is_admin(self) -> bool:
        return self.level >= Level.ADMIN


class RefreshToken(Model):
    """One refresh token, revoked when rotated or logged out."""

    id = fields.CharField(max_length=32, primary_key=True)
    user = fields.ForeignKeyField("models.User", related_name="refresh_tokens")
    token_hash = fields.CharField(max_length=64, unique=True)
    kind = fields.CharEnumField(LoginKind, max_length=16, default=LoginKind.PASSWORD)
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "refresh_tokens"


class ApiKey(Model):
    id = fields.CharField(max_length=32, primary_key=True)
    user = fields.ForeignKeyField("models.User", related_name="api_keys")
    name = fields.CharField(max_length=128)
    prefix = fields.CharField(max_length=16)
    key_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_keys"
        # A user's keys listing (migration 0005).
        indexes = (("user_id", "created_at"),)
