"""Parsing in a child process, stopped for certain when it runs too long or too big.

Parsers are C and Python libraries reading untrusted files: a crafted PDF can make one
loop, an odd spreadsheet can make one allocate without end, a damaged file can crash
one. A thread cannot be stopped and a crash takes the whole worker down, so each
document is parsed in a child process that the worker kills at the deadline. The child
also limits itself: its data segment (RLIMIT_DATA: heap and anonymous mappings, which
is what parsing grows; shared libraries don't count) and its CPU seconds (RLIMIT_CPU,
so even an orphaned child dies if its worker was killed first).

Children come from a forkserver that has already imported the parsers: each document
costs a fork (milliseconds), not a Python start-up and imports (about a second), and a
child never inherits the worker's threads, event loop or sockets.

The ingest worker's target parses *and* chunks (`knowledge/chunked_parse.py`), so
chunking runs under the same limits; the forkserver preloads the tokenizer and jieba
(`knowledge/chunk_warmup.py`) so no child loads them again.
"""

from __future__ import annotations

import multiprocessing
import resource
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from backend.knowledge.parsing.document import ParseFailure
from backend.knowledge.parsing.ocr_run import OCR_SETUP, OcrOptions, configure, ocr_memory_limit
from backend.knowledge.parsing.parse import PARSER_MODULES, parse_document
from backend.knowledge.parsing.parse_progress import ParseClock, ParseProgress, set_sink

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MEMORY_LIMIT = 1024 * 1024 * 1024
PRELOAD = ["backend.knowledge.parsing", *PARSER_MODULES, "backend.knowledge.chunk_warmup"]
MB = 1024 * 1024
STOP_POLL_SECONDS = 0.1

Parser = Callable[..., Any]

_context_lock = threading.Lock()
_context: Any = None


def parse_context() -> Any:
    """The forkserver context, with the parsers preloaded into the server once."""
    global _context
    with _context_lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            _context = context
    return _context


def memory_message(memory_limit: int | None) -> str:
    limit = f"the {memory_limit // MB} MB allowed" if memory_limit else "is available"
    return f"Parsing needed more memory than {limit}: the file is too large or damaged"


def limit_self(memory_limit: int | None, timeout_s: float, ocr: OcrOptions | None = None) -> None:
    if memory_limit:
        resource.setrlimit(resource.RLIMIT_DATA, (memory_limit, memory_limit))
    cpu_seconds = int(timeout_s) + 2
    # OCR raises the soft limit page by page (parse_progress.allow_cpu): keep the hard one.
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1] if ocr and ocr.enabled else cpu_seconds + 2
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, hard))


def parse_in_child(
    sender: Connection,
    target: Parser,
    path: str,
    fmt: str,
    chunk_method: str,
    memory_limit: int | None,
    timeout_s: float,
    extra: tuple[Any, ...] = (),
    ocr: OcrOptions | None = None,
) -> None:
    """The child's work: parse under limits and send back ("ok", parsed) or
    ("failed", reason), after any ("progress", ParseProgress) on the way. Never raises:
    whatever happens is the document's failure."""
    outcome: tuple[str, Any]
    # A SIGTERM for the worker's whole process group (a deploy stopping the service) is
    # the worker's to act on: it lets the parse end (a boundary of its drain) or kills
    # this child when the drain's time is up. Dying of it here failed the document.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        limit_self(memory_limit, timeout_s, ocr)
        configure(ocr)
        set_sink(lambda progress: sender.send(("progress", progress)))
        outcome = ("ok", target(Path(path), fmt, chunk_method, *extra))
    except ParseFailure as exc:
        outcome = ("failed", exc.reason)
    except MemoryError:
        outcome = ("failed", memory_message(memory_limit))
    except BaseException as exc:  # a parser bug: fail this document, not the worker
        outcome = ("failed", f"The parser failed on this file ({type(exc).__name__}: {exc})")
    try:
        sender.send(outcome)
    except MemoryError:
        sender.send(("failed", memory_message(memory_limit)))
    finally:
        sender.close()


def answered(receiver: Connection, timeout_s: float, stop: threading.Event | None) -> bool:
    """Whether the child answered within `timeout_s`; False early once `stop` is set."""
    if stop is None:
        return receiver.poll(timeout_s)
    deadline = time.monotonic() + timeout_s
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if receiver.poll(min(left, STOP_POLL_SECONDS)):
            return True
    return False


def crash_message(exit_code: int | None, memory_limit: int | None) -> str:
    how = f"signal {-exit_code}" if exit_code is not None and exit_code < 0 else f"{exit_code}"
    return (
        f"The parser crashed on this file (exit {how}): the file is damaged, or parsing "
        f"it needs more memory than {memory_limit // MB if memory_limit else '?'} MB"
    )


def run_parse_with_limits(
    path: Path,
    fmt: str,
    chunk_method: str = "naive",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
    *,
    target: Parser = parse_document,
    extra: tuple[Any, ...] = (),
    stop: threading.Event | None = None,
    ocr: OcrOptions | None = None,
    on_progress: Callable[[ParseProgress], None] | None = None,
) -> Any:
    """`target(path, fmt, chunk_method, *extra)` (parse_document) in a child process, killed
    after `timeout_s` seconds, its data segment limited to `memory_limit` bytes (None:
    unlimited). Returns the parsed document or raises ParseFailure: for the file's own
    faults, for the time or memory limit, and for a crash of the parser. Blocking:
    call it in a thread from async code. `target` must be importable by name (a
    module-level function) so the child can unpickle it. Setting `stop` (from another
    thread: the caller was cancelled) kills the child within STOP_POLL_SECONDS. `ocr`
    says what OCR may do (parsing/ocr_run.py); each step the child reports ("OCR page
    3/12") goes to `on_progress`, on this thread, and an OCR page gets its own budget
    (parse_progress.ParseClock). Both default to the context's `ocr_run.OCR_SETUP`."""
    setup = OCR_SETUP.get()
    if setup is not None:
        ocr = ocr or setup.options
        on_progress = on_progress or setup.on_progress
    memory_limit = ocr_memory_limit(memory_limit, fmt, ocr)
    context = parse_context()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=parse_in_child,
        args=(
            sender,
            target,
            str(path),
            str(fmt),
            chunk_method,
            memory_limit,
            timeout_s,
            extra,
            ocr,
        ),
        name="sluice-parse",
        daemon=True,
    )
    process.start()
    sender.close()
    clock = ParseClock(timeout_s)
    try:
        while True:
            if not answered(receiver, clock.left(), stop):
                if stop is not None and stop.is_set():
                    raise ParseFailure("Parsing was stopped")
                raise ParseFailure(clock.overdue())
            try:
                status, value = receiver.recv()
            except (EOFError, OSError):
                process.join(timeout=5)
                raise ParseFailure(crash_message(process.exitcode, memory_limit)) from None
            if status != "progress":
                break
            clock.advance(value)
            if on_progress is not None:
                on_progress(value)
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        process.join()
        process.close()
    if status != "ok":
        raise ParseFailure(value)
    return value
