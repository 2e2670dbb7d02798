"""Client app releases per platform: set by administrators, read by SwiftChat's upgrade check."""

from __future__ import annotations

import re
from dataclasses import dataclass

from backend.errors import BadRequest
from backend.models import AppVersion

NO_RELEASE = "0.0.0"
PLATFORM = re.compile(r"[a-z0-9_-]{1,32}")


@dataclass(frozen=True)
class UpgradeInfo:
    need_upgrade: bool
    version: str
    url: str


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(piece) for piece in version.split("."))


async def set_version(platform: str, version: str, url: str, notes: str) -> AppVersion:
    if not PLATFORM.fullmatch(platform):
        raise BadRequest(
            "Invalid platform: use 1-32 lowercase letters, digits, '-' or '_', e.g. android"
        )
    record, _ = await AppVersion.update_or_create(
        defaults={"version": version, "url": url, "notes": notes}, platform=platform
    )
    return record


async def list_versions() -> list[AppVersion]:
    return await AppVersion.all().order_by("platform")


async def upgrade_info(platform: str, current: str) -> UpgradeInfo:
    """Whether `current` is older than the latest release for `platform`, and where to get it."""
    record = await AppVersion.get_or_none(platform=platform.lower())
    if record is None:
        return UpgradeInfo(need_upgrade=False, version=NO_RELEASE, url="")
    need = version_key(current) < version_key(record.version)
    return UpgradeInfo(need_upgrade=need, version=record.version, url=record.url if need else "")
