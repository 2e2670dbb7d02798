"""Whether a task's stream may be read now, and what a refused reader is told.

The checks `open_task_reader` (backend/streams/delivery.py) makes before anything is
sent, so a refusal leaves as a JSON envelope (409 / 410): a stream is consumed once its
terminal event was delivered, expires with its task, and has one reader at a time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backend.errors import Gone
from backend.models import Task
from backend.settings import Settings
from backend.streams.endings import settle_stream
from backend.streams.task_stream import TaskStream, entry_id_key


def consumed_message(task_id: str) -> str:
    return (
        "Stream already consumed: its final event was delivered. Read the answer from the "
        f"session history or GET /api/v1/tasks/{task_id}"
    )


def expired_message(task_id: str) -> str:
    return (
        "Stream no longer available: it expired or the task has finished. Read the result "
        f"with GET /api/v1/tasks/{task_id} or from the session history"
    )


def busy_message(last_event_id: str | None = None) -> str:
    """Why a reader was refused, and the way in that this client surely has: the start
    (`0-0`), or the id of an event it did receive; never an id it may not hold."""
    if last_event_id is None:
        why = "you sent no last event id"
    else:
        why = f"'{last_event_id}' is not an event of this task's stream"
    return (
        "Another reader is already streaming this task; a stream has one reader at a time "
        f"and {why}. To take the stream over, reconnect with Last-Event-ID (or "
        "?last_event_id=) set to the id of the last event you received from it, or to 0-0 "
        "to read it again from the start; the other reader's delivery then ends"
    )


def stream_expired(task: Task, settings: Settings) -> bool:
    age = datetime.now(UTC) - task.created_at
    return task.state.terminal or age > timedelta(seconds=settings.stream_retention_seconds)


async def refuses_consumed(stream: TaskStream, last_event_id: str | None) -> bool:
    """A consumed stream is refused, except to a resume from one of its own entries.

    The server counts the terminal event delivered once it was written to the
    connection; a client that dropped just before reading it still holds an earlier id
    and gets exactly the rest. A fresh read, an unknown id or the terminal's own id
    gets 410.
    """
    if not await stream.is_consumed():
        return False
    if last_event_id is None or not await stream.has_entry(last_event_id):
        return True
    last = await stream.last_entry()
    return last is None or entry_id_key(last_event_id) >= entry_id_key(last.id)


async def ensure_readable(
    stream: TaskStream, task: Task, last_event_id: str | None, settings: Settings
) -> None:
    if await refuses_consumed(stream, last_event_id):
        raise Gone(consumed_message(task.id))
    last = await stream.last_entry()
    if last is None:
        if stream_expired(task, settings):
            raise Gone(expired_message(task.id))
        return
    if task.state.terminal and not last.terminal:
        # Settled in SQL, but its ender never wrote the ending (it died while Redis was
        # away): made from SQL now, so this reader does not wait on heartbeats for it.
        await settle_stream(stream, task)
        return
    if (
        last_event_id is not None
        and last.terminal
        and entry_id_key(last_event_id) >= entry_id_key(last.id)
    ):
        # The client already has the final event; it only missed our acknowledgement.
        await stream.mark_consumed()
        raise Gone(consumed_message(task.id))
