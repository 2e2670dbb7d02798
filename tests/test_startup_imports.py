"""Start-up stays light: the web process and the workers import no SDK or parsing
library they may never use (each costs a second or so of every start and restart:
bench/bench_startup.py). They are imported where they are used: the openai SDK by the
image and OpenAI embedding clients, the Cohere SDK by a Cohere client, the Elasticsearch
client when SEARCH_STORE is elasticsearch, the parsers in the parse forkserver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sqlite_only

ROOT = Path(__file__).resolve().parent.parent
HEAVY = (
    "openai",
    "cohere",
    "elasticsearch",
    "elastic_transport",
    "pptx",
    "docx",
    "openpyxl",
    "pypdfium2",
    "rapidocr_onnxruntime",
    "onnxruntime",
    "cv2",
)


def loaded_after_import(module: str) -> set[str]:
    probe = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "SEARCH_STORE": "embedded"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    return {name.split(".")[0] for name in json.loads(out.splitlines()[-1])}


@pytest.mark.parametrize("module", ["backend.asgi", "workers.chat", "workers.ingest"])
def test_process_entry_points_leave_the_heavy_libraries_unimported(module: str) -> None:
    assert loaded_after_import(module) & set(HEAVY) == set()


def test_the_parse_forkserver_preloads_every_parser() -> None:
    from backend.knowledge.parsing.parse import PARSER_MODULES, PARSERS, parser_for
    from backend.knowledge.parsing.runner import PRELOAD

    assert set(PARSER_MODULES) <= set(PRELOAD)
    for fmt in PARSERS:  # each entry names a parser that exists
        assert callable(parser_for(fmt))
