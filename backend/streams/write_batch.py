"""What one `EventWriter` batch carries: appends (retried through an outage, with the
fence that tells whether one landed) and side commands (sent along, never retried), and
how a reply settles the caller's future."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Append:
    key: str
    fields: dict[str, str]
    max_events: int
    expire_seconds: int | None
    done: asyncio.Future[bytes | str] = field(repr=False)
    # The stream's last entry confirmed before this append (None: unknown); a retry looks
    # after it for what landed.
    after: str | None = None


@dataclass(slots=True)
class Side:
    command: tuple[object, ...]
    done: asyncio.Future[object] = field(repr=False)


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def xadd_command(append: Append) -> tuple[object, ...]:
    """`XADD key MAXLEN ~ n * field value …`, as redis-py's `xadd(…, approximate=True)`."""
    command: list[object] = ["XADD", append.key, "MAXLEN", "~", append.max_events, "*"]
    for pair in append.fields.items():
        command.extend(pair)
    return tuple(command)


def settle(done: asyncio.Future[Any], outcome: object) -> None:
    if done.done():  # its caller was cancelled; the entry may still have been written
        return
    if isinstance(outcome, asyncio.CancelledError):  # the process is shutting down
        done.cancel()
    elif isinstance(outcome, BaseException):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)  # type: ignore[arg-type]
