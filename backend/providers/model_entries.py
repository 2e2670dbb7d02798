"""One parser for the model-list settings (MODELS, EMBEDDING_MODELS, RERANK_MODELS).

Each is a JSON list of entries validated by a pydantic model. An operator's mistake must
stop the process at start with a message naming the setting, the entry and what is wrong,
never surface later as a failed request.
"""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError

Entry = TypeVar("Entry", bound=BaseModel)


def parse_model_entries(
    raw: str, setting: str, entry_type: type[Entry], error: type[ValueError]
) -> list[Entry]:
    """The entries of `setting` (empty text: none), validated, ids unique; else `error`."""
    items: object = []
    if raw.strip():
        try:
            items = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise error(f"{setting} is not valid JSON ({exc.msg} at char {exc.pos})") from exc
    if not isinstance(items, list):
        raise error(f"{setting} must be a JSON list of model entries")
    entries: list[Entry] = []
    for index, item in enumerate(items):
        name = item.get("id", "?") if isinstance(item, dict) else "?"
        try:
            entries.append(entry_type.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in exc.errors()
            )
            raise error(f"{setting} entry {index} ('{name}') is invalid: {problems}") from exc
    ids = [getattr(entry, "id") for entry in entries]  # noqa: B009 - every entry type has an id
    if duplicate := next((i for i in ids if ids.count(i) > 1), None):
        raise error(f"{setting} lists model id '{duplicate}' twice")
    return entries
