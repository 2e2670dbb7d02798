"""JSON: flattened into readable `path: value` lines.

`{"user": {"name": "Ada", "langs": ["en", "fr"]}}` reads as `user.name: Ada`,
`user.langs[0]: en`, `user.langs[1]: fr`: each value keeps the names that say what it
is, which a search and a language model need, and no line is JSON punctuation. Each
top-level member (an object's key or an array's item) is a section, so a record is
not split across chunks while it fits the budget. Flattening walks an explicit stack,
so deep nesting costs no recursion; orjson refuses nesting beyond 1024 levels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from backend.knowledge.parsing.document import ParsedDocument, ParseFailure, Section, require_text
from backend.knowledge.parsing.text import read_text


def scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value.strip()
    return str(value)


def flattened(value: Any, path: str = "") -> Iterator[str]:
    """`path: value` lines for every scalar under `value`, in document order; nulls and
    empty strings and containers give nothing."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, dict):
            members = [(f"{where}.{key}" if where else str(key), v) for key, v in item.items()]
            stack.extend(reversed(members))
        elif isinstance(item, list):
            items = [(f"{where}[{index}]", child) for index, child in enumerate(item)]
            stack.extend(reversed(items))
        elif item is not None and scalar_text(item):
            yield f"{where}: {scalar_text(item)}" if where else scalar_text(item)


def json_sections(value: Any) -> list[Section]:
    if isinstance(value, dict):
        members = [(str(key), child) for key, child in value.items()]
    elif isinstance(value, list):
        members = [(f"[{index}]", child) for index, child in enumerate(value)]
    else:
        members = [("", value)]
    sections = []
    for path, member in members:
        lines = list(flattened(member, path))
        if lines:
            sections.append(Section("\n".join(lines)))
    return sections


def parse_json(path: Path) -> ParsedDocument:
    text = read_text(path, "The JSON file")
    if not text.strip():
        raise ParseFailure("The JSON file contains no text: nothing to index")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ParseFailure(f"The JSON file is not valid JSON: {exc}") from exc
    return require_text(json_sections(value), "The JSON file")
