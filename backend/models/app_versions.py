"""Latest client app release per platform, served by SwiftChat's /api/upgrade."""

from tortoise import fields
from tortoise.models import Model


class AppVersion(Model):
    platform = fields.CharField(max_length=32, primary_key=True)
    version = fields.CharField(max_length=32)
    url = fields.CharField(max_length=1024, default="")
    notes = fields.TextField(default="")
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "app_versions"
