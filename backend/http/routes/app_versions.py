"""Latest app release per platform: administrators publish, everyone signed in reads."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_request, validate_response

from backend.http.auth import authenticated
from backend.http.responses import ok
from backend.models import AppVersion
from backend.services import app_versions
from schemas.envelope import Envelope
from schemas.swiftchat import AppVersionOut, AppVersionUpdate

blueprint = Blueprint("app_versions", __name__, url_prefix="/api/v1/app-versions")


def version_out(record: AppVersion) -> AppVersionOut:
    return AppVersionOut(
        platform=record.platform,
        version=record.version,
        url=record.url,
        notes=record.notes,
        updated_at=record.updated_at,
    )


@blueprint.get("")
@authenticated
@validate_response(Envelope[list[AppVersionOut]])
async def list_app_versions():
    """The latest release of every platform."""
    return ok([version_out(record) for record in await app_versions.list_versions()])


@blueprint.put("/<platform>")
@authenticated(admin=True)
@validate_request(AppVersionUpdate)
@validate_response(Envelope[AppVersionOut])
async def put_app_version(platform: str, data: AppVersionUpdate):
    """Publish the latest release for a platform (e.g. `android`, `mac`); administrators only."""
    record = await app_versions.set_version(platform, data.version, data.url, data.notes)
    return ok(version_out(record))
