"""The vectors a drained run kept (backend/knowledge/embedding_resume.py) go only to a run
whose chunks and model are the same, once, over a real Redis."""

from __future__ import annotations

import numpy as np
import pytest
import redis.asyncio as aioredis

from backend.constants import ingest_resume_key
from backend.knowledge.embedding_resume import keep_embedded, take_embedded
from backend.settings import Settings

pytestmark = pytest.mark.sqlite_only

TEXTS = ["the weir", "the sluice gate", "the mill race", "otters", "herons"]
MODEL = "fake-embed@openai"


def vectors(rows: int) -> np.ndarray:
    return np.arange(rows * 8, dtype=np.float32).reshape(rows, 8) / 7


async def test_kept_vectors_resume_the_same_chunks_once(
    settings: Settings, redis: aioredis.Redis
) -> None:
    kept = vectors(3)
    assert await keep_embedded(redis, settings, "d1", MODEL, TEXTS, kept)
    assert await redis.ttl(ingest_resume_key(settings.redis_prefix, "d1")) > 3000
    taken = await take_embedded(redis, settings, "d1", MODEL, TEXTS)
    assert taken is not None and np.array_equal(taken, kept)
    assert await take_embedded(redis, settings, "d1", MODEL, TEXTS) is None


@pytest.mark.parametrize(
    ("model", "texts"),
    [
        (MODEL, [*TEXTS[:4], "kingfishers"]),  # a chunk changed (the file, or its config)
        (MODEL, TEXTS[:4]),  # chunked differently
        ("other-embed@openai", TEXTS),  # the dataset's model changed
    ],
)
async def test_kept_vectors_are_dropped_for_other_chunks_or_another_model(
    settings: Settings, redis: aioredis.Redis, model: str, texts: list[str]
) -> None:
    assert await keep_embedded(redis, settings, "d2", MODEL, TEXTS, vectors(3))
    assert await take_embedded(redis, settings, "d2", model, texts) is None
    assert not await redis.exists(ingest_resume_key(settings.redis_prefix, "d2"))
