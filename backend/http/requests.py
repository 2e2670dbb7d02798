"""The request class: how bodies are decoded once `body_limits` has bounded their size.

JSON goes through `json_bodies.decode_json` (bounded structure, strict UTF-8, no NUL),
so no route can parse a body the unsafe way. A JSON body in another charset is a 415.
Forms have at most FORM_MAX_FIELDS fields (counted before any is parsed) and no NUL in
their text; a bad form is a 4xx with the envelope instead of an empty form.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from quart import Request
from quart.formparser import FormDataParser
from quart.wrappers.request import Body
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge

from backend.errors import (
    ApiError,
    BadRequest,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
)
from backend.http.flow_control import FlowControlledBody
from backend.http.json_bodies import NUL_MESSAGE, decode_json

# A login form has four fields; nothing the API takes as a form needs a hundred.
FORM_MAX_FIELDS = 100
UTF8_CHARSETS = {"utf-8", "utf8", "us-ascii", "ascii"}


def too_many_fields() -> PayloadTooLarge:
    return PayloadTooLarge(f"Form has too many fields: at most {FORM_MAX_FIELDS}")


def form_too_large(max_field_bytes: int | None) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Form too large: at most {FORM_MAX_FIELDS} fields, and at most "
        f"{max_field_bytes} bytes in each text field; send files as file parts"
    )


def refuse_nul(fields: list[tuple[str, str]]) -> None:
    if any("\x00" in name or "\x00" in value for name, value in fields):
        raise Unprocessable(f"Form: {NUL_MESSAGE}")


class SluiceFormParser(FormDataParser):
    """Quart's parser with the field count enforced for urlencoded forms too."""

    async def _parse_urlencoded(
        self, body: Body, mimetype: str, content_length: int | None, options: dict[str, str]
    ) -> tuple[MultiDict, MultiDict]:
        raw = await body
        if raw.count(b"&") >= FORM_MAX_FIELDS:
            raise too_many_fields()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BadRequest("The form is not valid UTF-8: encode it as UTF-8") from error
        fields = parse_qsl(text, keep_blank_values=True)
        refuse_nul(fields)
        return self.cls(fields), self.cls()

    async def _parse_multipart(
        self, body: Body, mimetype: str, content_length: int | None, options: dict[str, str]
    ) -> tuple[MultiDict, MultiDict]:
        try:
            form, files = await super()._parse_multipart(body, mimetype, content_length, options)
        except RequestEntityTooLarge as error:
            raise form_too_large(self.max_form_memory_size) from error
        refuse_nul(list(form.items(multi=True)))
        return form, files

    parse_functions = {
        "multipart/form-data": _parse_multipart,
        "application/x-www-form-urlencoded": _parse_urlencoded,
        "application/x-url-encoded": _parse_urlencoded,
    }


class SluiceRequest(Request):
    form_data_parser_class = SluiceFormParser
    # Streamed bodies (document uploads) are read only as fast as the route takes them.
    body_class = FlowControlledBody

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        """The body as JSON through the bounded decoder; None if it is not JSON."""
        if cache and self._cached_json[silent] is not Ellipsis:
            return self._cached_json[silent]
        if not (force or self.is_json):
            return None
        charset = self.mimetype_params.get("charset", "utf-8").lower()
        try:
            if charset not in UTF8_CHARSETS:
                raise UnsupportedMediaType(
                    f"JSON bodies must be UTF-8, not {charset[:40]!r}: "
                    "send 'Content-Type: application/json' with UTF-8 text"
                )
            result = decode_json(await self.get_data(cache=cache, as_text=False))
        except ApiError:
            if not silent:
                raise
            result = None
        if cache:
            self._cached_json[silent] = result
        return result
