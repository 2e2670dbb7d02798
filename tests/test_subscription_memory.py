"""An idle open stream's subscription is small: thousands of open SSE streams each hold
one waiting in `get` (issue 16: at most 40 KB of web memory per idle stream)."""

from __future__ import annotations

import asyncio
import tracemalloc

from backend.streams.subscription import Subscription
from backend.streams.task_stream import START, StreamEntry
from schemas.events import EventType

COUNT = 500
MAX_BYTES_EACH = 1500  # an asyncio.Queue alone took ~3.3 KB, a pending asyncio.timeout more


async def test_a_waiting_subscription_takes_little_memory() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        subscriptions = [Subscription(f"stream-{i}", START) for i in range(COUNT)]
        for subscription in subscriptions:
            subscription.caught_up([])
        waits = [asyncio.create_task(s.get(60)) for s in subscriptions]
        await asyncio.sleep(0)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    task_bytes = sum(
        stat.size_diff
        for stat in after.compare_to(before, "filename")
        if stat.traceback[0].filename.endswith(("tasks.py", "base_events.py", "events.py"))
    )
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename")) - task_bytes
    assert grown / COUNT < MAX_BYTES_EACH, grown / COUNT
    entry = StreamEntry(id="1-1", type=EventType.TOKEN, data='{"delta":"x"}')
    subscriptions[0].deliver([entry])
    assert await waits[0] == entry
    subscriptions[1].wake()
    assert await waits[1] is None
    for wait in waits[2:]:
        wait.cancel()
    await asyncio.gather(*waits[2:], return_exceptions=True)
    assert all(s.waiter is None for s in subscriptions)


async def test_get_times_out_with_none_and_keeps_order() -> None:
    subscription = Subscription("s", START)
    subscription.caught_up([])
    assert await subscription.get(0.01) is None
    entries = [StreamEntry(id=f"1-{i}", type=EventType.TOKEN, data="{}") for i in range(1, 4)]
    subscription.deliver(entries)
    subscription.deliver(entries[:2])  # already delivered: dropped
    assert subscription.waiting == 3
    assert [await subscription.get(1) for _ in range(3)] == entries
    assert subscription.waiting == 0
