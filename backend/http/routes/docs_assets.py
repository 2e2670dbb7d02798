"""Swagger UI's script and style for `/docs`, served from a Python package.

quart-schema's `/docs` page loads Swagger UI from a CDN by default, which leaves it blank
on a machine without internet, where the rest of Sluice works. The assets come from the
`swagger-ui-py` package instead (Swagger UI 5, which reads the OpenAPI 3.1 document
quart-schema writes; the older `swagger-ui-bundle` ships 4.x, which cannot): only the
two files the page loads are served, immutable per installed version.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import version
from pathlib import Path

from quart import Blueprint, Response
from quart.blueprints import BlueprintSetupState
from quart_schema import hide
from swagger_ui.utils import SWAGGER_UI_PY_ROOT

from backend.errors import NotFound

ASSETS_DIR = Path(SWAGGER_UI_PY_ROOT) / "static"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
}
URL_PREFIX = "/docs/assets"
# The package's version in the URL: a new install is a new URL, so caching is safe.
ASSETS_VERSION = version("swagger-ui-py")
SWAGGER_JS_URL = f"{URL_PREFIX}/{ASSETS_VERSION}/swagger-ui-bundle.js"
SWAGGER_CSS_URL = f"{URL_PREFIX}/{ASSETS_VERSION}/swagger-ui.css"
ONE_YEAR = 365 * 24 * 3600

blueprint = Blueprint("docs_assets", __name__, url_prefix=URL_PREFIX)


@blueprint.record_once
def point_docs_here(state: BlueprintSetupState) -> None:
    """quart-schema's `/docs` template takes its asset URLs from these settings."""
    state.app.config["QUART_SCHEMA_SWAGGER_JS_URL"] = SWAGGER_JS_URL
    state.app.config["QUART_SCHEMA_SWAGGER_CSS_URL"] = SWAGGER_CSS_URL


@cache
def asset_bytes(name: str) -> bytes:
    """Read once per process (1.6 MB for both): the files never change while it runs."""
    return (ASSETS_DIR / name).read_bytes()


@blueprint.get("/<asset_version>/<name>")
@hide
async def swagger_asset(asset_version: str, name: str) -> Response:
    """One of the page's two assets; anything else under this prefix is a 404."""
    if asset_version != ASSETS_VERSION or name not in ASSETS:
        raise NotFound("No such documentation asset")
    response = Response(asset_bytes(name), content_type=ASSETS[name])
    response.headers["Cache-Control"] = f"public, max-age={ONE_YEAR}, immutable"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
