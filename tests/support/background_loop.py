"""Async test servers (the fake upstreams) on an event loop of their own, in a thread.

The fakes normally run on the test session's event loop. A synchronous test, such as
the schemathesis run that calls the live server with `requests`, blocks that loop for
its whole duration, so a fake on it would never answer the live server's worker.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import TypeVar

T = TypeVar("T")
TIMEOUT_SECONDS = 30.0


@contextmanager
def in_background_loop(factory: Callable[[], AbstractAsyncContextManager[T]]) -> Iterator[T]:
    """Enter `factory()` on a new event loop in a daemon thread; exit it and stop the loop
    at the end of the block."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="background-loop", daemon=True)
    thread.start()
    manager = factory()
    try:
        value = asyncio.run_coroutine_threadsafe(manager.__aenter__(), loop).result(TIMEOUT_SECONDS)
        try:
            yield value
        finally:
            asyncio.run_coroutine_threadsafe(manager.__aexit__(None, None, None), loop).result(
                TIMEOUT_SECONDS
            )
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT_SECONDS)
        loop.close()
