"""Parsers that misbehave, for the runner's tests: module-level so a forkserver child
can import them by name."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from backend.knowledge.parsing import ParsedDocument, parse_document


def looping_parser(path: Path, fmt: str, chunk_method: str) -> ParsedDocument:
    """Loops forever, as a parser stuck on a crafted file does."""
    (path.parent / "started").write_text(str(os.getpid()))
    while True:
        pass


def memory_hog_parser(path: Path, fmt: str, chunk_method: str) -> ParsedDocument:
    """Allocates without end, 64 MB at a time."""
    hoard = []
    while True:
        hoard.append(bytearray(64 * 1024 * 1024))


def crashing_parser(path: Path, fmt: str, chunk_method: str) -> ParsedDocument:
    """Dies as a C library does on a segmentation fault."""
    os.kill(os.getpid(), signal.SIGSEGV)
    raise AssertionError("unreachable")


def buggy_parser(path: Path, fmt: str, chunk_method: str) -> ParsedDocument:
    return {}["missing"]


def slow_parser(path: Path, fmt: str, chunk_method: str) -> ParsedDocument:
    """Parses normally after 1.5 s: time for a test to signal the child mid-parse."""
    (path.parent / "started").write_text(str(os.getpid()))
    time.sleep(1.5)
    return parse_document(path, fmt, chunk_method)
