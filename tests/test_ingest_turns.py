"""Fair turns at the ingest worker's shared resources (`ingest_turns.py`) and embedding
batches sized by measured speed (`batch_pace.py`), deterministically: who is served
next, the per-user cap, a waiter that gives up, and the batch sizes that follow a speed."""

from __future__ import annotations

import asyncio

from backend.knowledge.batch_pace import BatchPace
from backend.knowledge.chunked_parse import parse_budget
from backend.knowledge.ingest_turns import FairTurns
from backend.settings import Settings

MB = 1024 * 1024


async def served_order(turns: FairTurns, asks: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Each (user, document) asks for a turn in this order while one holder keeps the
    only slot; then the holder leaves and each turn, once granted, is released."""
    served: list[tuple[int, str]] = []
    holder = turns.turn(0, "holder")
    await holder.__aenter__()

    async def ask(user: int, document: str) -> None:
        async with turns.turn(user, document):
            served.append((user, document))
            await asyncio.sleep(0)

    tasks = []
    for user, document in asks:
        tasks.append(asyncio.create_task(ask(user, document)))
        await asyncio.sleep(0)
    await holder.__aexit__(None, None, None)
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    return served


async def test_turns_go_round_robin_by_user_then_document() -> None:
    # User 1 asks for six batches of two documents before user 2's single one.
    asks = [(1, "big-a"), (1, "big-b")] * 3 + [(2, "small")]
    served = await served_order(FairTurns(1), asks)
    # User 2's only batch comes second, not seventh; user 1's documents alternate.
    assert served[:3] == [(1, "big-a"), (2, "small"), (1, "big-b")]
    assert served[3:] == [(1, "big-a"), (1, "big-b"), (1, "big-a"), (1, "big-b")]


async def test_one_user_never_holds_every_parse_slot() -> None:
    turns = FairTurns(2, per_user=1)
    first = turns.turn(1, "big-a")
    await first.__aenter__()
    second = asyncio.create_task(hold(turns, 1, "big-b"))
    await asyncio.sleep(0.01)
    assert not second.done() and turns.busy == 1  # user 1 is at their cap
    # Another user's small document takes the free slot at once.
    await asyncio.wait_for(hold(turns, 2, "small"), 1)
    await first.__aexit__(None, None, None)
    await asyncio.wait_for(second, 1)
    assert (turns.busy, turns.waiting(), dict(turns.held)) == (0, 0, {})


async def test_a_waiter_that_gives_up_leaves_its_place() -> None:
    turns = FairTurns(1)
    first = turns.turn(1, "a")
    await first.__aenter__()
    quitter = asyncio.create_task(hold(turns, 2, "b"))
    stayer = asyncio.create_task(hold(turns, 3, "c"))
    await asyncio.sleep(0.01)
    quitter.cancel()
    await asyncio.gather(quitter, return_exceptions=True)
    assert turns.waiting() == 1
    await first.__aexit__(None, None, None)
    await asyncio.wait_for(stayer, 1)
    assert (turns.busy, turns.waiting(), list(turns.users)) == (0, 0, [])


async def hold(turns: FairTurns, user: int, document: str) -> None:
    async with turns.turn(user, document):
        await asyncio.sleep(0.01)


def test_batches_follow_the_measured_speed() -> None:
    pace = BatchPace(target_seconds=1.0, max_size=16)
    texts = ["x" * 100] * 50
    assert pace.batch_end(texts, 0) == 1  # nothing measured yet: one text
    pace.record(texts[:1], 0.25)  # 0.25 s per 100 characters
    assert pace.batch_end(texts, 1) == 1 + 4
    pace.record(texts[:4], 4.0)  # slower now: the estimate moves toward 1 s per text
    assert 1 <= pace.batch_end(texts, 5) - 5 < 4
    fast = BatchPace(target_seconds=1.0, max_size=16)
    fast.record(texts[:1], 0.001)
    assert fast.batch_end(texts, 0) == 16  # never more than EMBEDDING_BATCH_SIZE


def test_the_parse_budget_grows_with_the_file_and_is_capped(settings: Settings) -> None:
    tuned = settings.model_copy(
        update={
            "ingest_parse_base_seconds": 5.0,
            "ingest_parse_seconds_per_mb": 10.0,
            "ingest_parse_timeout_seconds": 60.0,
        }
    )
    assert parse_budget(14, tuned) < 5.001
    assert parse_budget(2 * MB, tuned) == 25.0
    assert parse_budget(16 * MB, tuned) == 60.0
