"""Chat image uploads: `POST /api/v1/uploads` (multipart `file`), `GET` the image back."""

from __future__ import annotations

from quart import Blueprint, Response, current_app
from quart_schema import DataSource, document_response, validate_request, validate_response

from backend.http.auth import authenticated, current_user
from backend.http.body_limits import body_limit, upload_file
from backend.http.documented_errors import document_errors
from backend.http.openapi import UploadedImage
from backend.http.responses import ok
from backend.services import uploads
from schemas.envelope import Envelope
from schemas.uploads import UploadForm, UploadOut

blueprint = Blueprint("uploads", __name__, url_prefix="/api/v1/uploads")


@blueprint.post("")
@document_errors(415)
@body_limit(upload_file)
@authenticated
@validate_request(UploadForm, source=DataSource.FORM_MULTIPART)
@validate_response(Envelope[UploadOut], 201)
async def create_upload(data: UploadForm):
    """Upload a chat image (PNG, JPEG, GIF, WebP; size-limited); use its id in image parts."""
    settings = current_app.config["SETTINGS"]
    content = data.file.read(settings.upload_image_max_bytes + 1)
    upload, info = await uploads.save_upload(current_user(), content, settings)
    out = UploadOut(
        id=upload.id,
        content_type=upload.content_type,
        size=upload.size,
        width=info.width,
        height=info.height,
        created_at=upload.created_at,
    )
    return ok(out, 201)


@blueprint.get("/<id:upload_id>")
@authenticated
@document_response(UploadedImage)
async def get_upload(upload_id: str) -> Response:
    """The uploaded image's bytes, for its owner only."""
    upload = await uploads.get_upload(current_user(), upload_id)
    data = await uploads.read_upload(upload, current_app.config["SETTINGS"])
    return Response(
        data,
        mimetype=upload.content_type,
        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
