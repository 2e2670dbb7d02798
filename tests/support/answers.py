"""What a client streamed against what SQL kept: the check every fault test ends with."""

from __future__ import annotations

from backend.models import Message, Task
from backend.models.chats import Role
from backend.models.tasks import TaskState
from tests.support.sse_client import Frame


async def assert_answered_as_streamed(task_id: str, frames: list[Frame]) -> Task:
    """One `done` ended the stream, the task succeeded, and its one stored assistant
    message is exactly the text the client was streamed; returns the task."""
    assert [f.event for f in frames if f.terminal] == ["done"], frames[-1]
    streamed = "".join(f.data["delta"] for f in frames if f.event == "token")
    task = await Task.get(id=task_id)
    assert task.state is TaskState.SUCCEEDED
    stored = await Message.filter(task_id=task_id, role=Role.ASSISTANT)
    assert [m.content[0]["text"] for m in stored] == [streamed]
    return task
