"""The written forms of settings that are not plain scalars, and the one line an invalid
setting stops start-up with (instead of pydantic's multi-line traceback).

Kept apart from `backend/settings.py` so the rules can be read and tested alone.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

ORIGINS_FORM = (
    "comma-separated origins (http://a.example,https://b.example:8443), "
    'a JSON list (["http://a.example"]), or * for any origin'
)

# What each kind of pydantic error expects, in the words of an environment variable.
EXPECTED_FORMS = {
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "bool_parsing": "true or false",
    "literal_error": "one of the listed values",
    "url_parsing": "a URL",
    "string_type": "a text value",
}


# Settings whose values must not be printed, even when wrong.
SECRET_WORDS = ("KEY", "SECRET", "PASSWORD", "TOKEN")


def origins_list(value: str) -> list[str]:
    """`CORS_ORIGINS` as written: empty, a JSON list of strings, or comma-separated."""
    text = value.strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"is not a valid JSON list ({error.msg}); use {ORIGINS_FORM}"
            ) from None
        if not isinstance(parsed, list) or not all(isinstance(item, str) for item in parsed):
            raise ValueError(f"must list strings; use {ORIGINS_FORM}")
        origins = [item.strip() for item in parsed]
    else:
        origins = [item.strip() for item in text.split(",")]
    origins = [origin for origin in origins if origin]
    for origin in origins:
        if origin != "*" and not well_formed_origin(origin):
            raise ValueError(f"has '{origin[:80]}', which is not an origin; use {ORIGINS_FORM}")
    return origins


def well_formed_origin(origin: str) -> bool:
    """scheme://host[:port], nothing after it (a browser's Origin has no path)."""
    scheme, separator, rest = origin.partition("://")
    return (
        scheme in {"http", "https"}
        and bool(separator)
        and bool(rest)
        and not any(mark in rest for mark in "/?# ")
    )


def startup_error_line(error: ValidationError | SettingsError) -> str:
    """One line naming each invalid variable, what it holds and the form it expects."""
    if isinstance(error, SettingsError):
        return f"invalid setting: {error}"
    parts = [describe(item) for item in error.errors(include_url=False)]
    if len(parts) == 1:
        return f"invalid setting {parts[0]}"
    return "invalid settings: " + "; ".join(parts)


def describe(item: Any) -> str:
    location = item.get("loc") or ()
    message = str(item.get("msg", "")).removeprefix("Value error, ")
    if not location:
        # A rule across settings (model validator): its message names the variables.
        return message
    name = str(location[0]).upper()
    secret = any(word in name for word in SECRET_WORDS)
    shown = "(hidden)" if secret else repr(item.get("input"))[:60]
    expected = EXPECTED_FORMS.get(str(item.get("type")))
    if item.get("type") == "value_error":
        return f"{name} {message}" if secret else f"{name}={shown}: {message}"
    if expected:
        return f"{name}={shown}: expected {expected} ({message})"
    return f"{name}={shown}: {message}"
