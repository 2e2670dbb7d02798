"""`.env.example` documents every setting, with the default the code really uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.settings import Settings

EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"


def example_values() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


@pytest.mark.sqlite_only
def test_every_setting_is_in_env_example() -> None:
    documented = set(example_values())
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - documented == set(), "settings missing from .env.example"
    assert documented - fields == set(), ".env.example names settings that do not exist"


@pytest.mark.sqlite_only
def test_env_example_defaults_match_code(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in example_values():
        monkeypatch.delenv(name, raising=False)
    from_example = Settings(_env_file=str(EXAMPLE))
    built_in = Settings(_env_file=None)
    assert from_example.model_dump() == built_in.model_dump()
