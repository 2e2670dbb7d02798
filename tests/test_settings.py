"""`.env.example` documents every setting, with the default the code really uses."""

from __future__ import annotations

import os
import subprocess
import sys
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


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("written", "origins"),
    [
        ("http://a.example", ["http://a.example"]),
        (
            "http://a.example, https://b.example:8443",
            ["http://a.example", "https://b.example:8443"],
        ),
        ('["http://a.example","https://b.example"]', ["http://a.example", "https://b.example"]),
        ("*", ["*"]),
        ("", []),
        ("[]", []),
    ],
)
def test_cors_origins_take_the_plain_and_the_json_form(
    monkeypatch: pytest.MonkeyPatch, written: str, origins: list[str]
) -> None:
    monkeypatch.setenv("CORS_ORIGINS", written)
    assert Settings(_env_file=None).cors_origins == origins


def start(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`python -m backend migrate`, the first process `make run` starts."""
    base = {k: v for k, v in os.environ.items() if k not in ("CORS_ORIGINS", "PORT")}
    return subprocess.run(
        [sys.executable, "-m", "backend", "migrate"],
        cwd=EXAMPLE.parent,
        env={**base, "DATA_DIR": str(tmp_path), "DATABASE_URL": "", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.sqlite_only
def test_a_plain_cors_origin_starts(tmp_path: Path) -> None:
    result = start({"CORS_ORIGINS": "http://a.example"}, tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CORS_ORIGINS": "ftp://a.example"}, ["CORS_ORIGINS", "comma-separated origins"]),
        ({"CORS_ORIGINS": "http://a.example/app"}, ["CORS_ORIGINS", "not an origin"]),
        ({"CORS_ORIGINS": '["http://a.example"'}, ["CORS_ORIGINS", "JSON list"]),
        ({"PORT": "eighty"}, ["PORT='eighty'", "expected a whole number"]),
        ({"LOG_JSON": "maybe"}, ["LOG_JSON='maybe'", "expected true or false"]),
        ({"SEARCH_STORE": "solr"}, ["SEARCH_STORE='solr'", "'embedded' or 'elasticsearch'"]),
    ],
)
def test_an_invalid_setting_stops_start_up_with_one_line(
    tmp_path: Path, env: dict[str, str], expected: list[str]
) -> None:
    result = start(env, tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert all(part in lines[0] for part in expected), lines[0]
    assert "Traceback" not in result.stderr and "pydantic" not in result.stderr
