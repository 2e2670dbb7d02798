"""Decoding untrusted JSON (HTTP bodies and WebSocket messages) with bounded cost.

Python objects cost ~25 bytes of memory per byte of JSON made of many small objects,
and the standard library recurses once per nesting level (RecursionError near 1,000).
So before anything is parsed, the text's structure is counted from its bytes: more
than `JSON_MAX_ITEMS` values or `JSON_MAX_DEPTH` levels is refused without allocating
them. Parsing is orjson's: strict UTF-8 (lone surrogates included), no NaN, in C.
Text is never allowed to carry NUL (`\\u0000`): PostgreSQL cannot store it, and it
turns substring searches into match-everything.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

import orjson

from backend.errors import BadRequest, PayloadTooLarge, Unprocessable

JSON_MAX_DEPTH = 64
JSON_MAX_ITEMS = 50_000
NUL_MESSAGE = "Text must not contain NUL characters (\\u0000): remove them and send it again"

# A string literal, or an unterminated one up to the end (so a malformed body costs
# one linear pass, never a retry per quote); possessive, so nothing backtracks.
STRING_LITERAL = re.compile(rb'(?s)"(?:[^"\\]++|\\.)*+"?')
# `\u0000` preceded by an even number of backslashes: an escaped NUL, not the text "\u0000".
NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*+\\u0000")
OPENERS = (b"[", b"{")
# +1 for an opening bracket, -1 for a closing one, 0 for any other byte.
DEPTH_STEP = [0] * 256
DEPTH_STEP[ord("[")] = DEPTH_STEP[ord("{")] = 1
DEPTH_STEP[ord("]")] = DEPTH_STEP[ord("}")] = -1
NOT_BRACKETS = bytes(b for b in range(256) if DEPTH_STEP[b] == 0)


def without_strings(raw: bytes) -> bytes:
    """`raw` with its string literals removed, leaving only the structure to count."""
    if b'\\"' not in raw:
        # No escaped quote: every other piece between quotes is a string's content.
        return b"".join(raw.split(b'"')[0::2])
    return STRING_LITERAL.sub(b"", raw)


def count_items(text: bytes) -> int:
    """Values in `text` if it holds no string literals: each comes first or after a comma
    (an object's key and value count once), plus the containers themselves."""
    return text.count(b",") + sum(text.count(opener) for opener in OPENERS) + 1


def max_depth(text: bytes) -> int:
    """Deepest nesting of brackets in `text` (which holds no string literals)."""
    return max(accumulate(map(DEPTH_STEP.__getitem__, text.translate(None, NOT_BRACKETS))))


def check_structure(raw: bytes) -> None:
    """Refuse JSON with too many values or levels, counting them in the raw bytes.

    The first counts include commas and brackets inside strings, so they can only
    overestimate; only a body that fails them is counted again with strings removed.
    """
    openers = sum(raw.count(opener) for opener in OPENERS)
    if openers <= JSON_MAX_DEPTH and count_items(raw) <= JSON_MAX_ITEMS:
        return
    structure = without_strings(raw)
    if count_items(structure) > JSON_MAX_ITEMS:
        raise PayloadTooLarge(
            f"JSON has too many values: at most {JSON_MAX_ITEMS} arrays, objects, "
            "strings, numbers, booleans and nulls in one body"
        )
    if max_depth(structure) > JSON_MAX_DEPTH:
        raise BadRequest(
            f"JSON is nested too deeply: at most {JSON_MAX_DEPTH} levels of arrays and objects"
        )


def decode_json(raw: bytes | str) -> Any:
    """The value of a JSON text; a 4xx ApiError saying what is wrong with it otherwise."""
    if isinstance(raw, str):
        # Lone surrogates stay invalid UTF-8, for orjson to refuse.
        raw = raw.encode("utf-8", "surrogatepass")
    check_structure(raw)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequest(
            f"Malformed JSON ({error}): send a UTF-8 JSON text matching the documented schema"
        ) from error
    if b"\\u0000" in raw and NUL_ESCAPE.search(raw):
        raise Unprocessable(NUL_MESSAGE)
    return value
