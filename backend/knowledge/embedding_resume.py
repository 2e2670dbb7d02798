"""Vectors a drained run had already embedded, kept for the run that takes its document over.

An ingest worker stopped for a deploy hands its documents back at an embedding batch
boundary (`ingest_drain.py`). The batches it embedded are paid for (a hosted provider
bills them, the local model spent seconds on each), so they are kept in Redis for an hour
(`ingest_resume_key`) with a fingerprint of the model and of every chunk text. The next
run parses the file again (parsing is deterministic and cheap next to embedding) and, if
its chunks have the same fingerprint, embeds only the chunks after those kept. A changed
configuration, model or file gives another fingerprint: the kept vectors are dropped.

Best effort: Redis unavailable while keeping or taking them means embedding those chunks
again, never a failed run.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import numpy as np
from redis.asyncio import Redis

from backend.constants import ingest_resume_key
from backend.dependency_failures import dependency_failure
from backend.settings import Settings

log = logging.getLogger("sluice.ingest")

RESUME_TTL_SECONDS = 3600


def fingerprint(model: str, texts: Sequence[str]) -> str:
    """What the kept vectors were computed from: the model and every text, in order."""
    digest = hashlib.sha256(model.encode())
    for text in texts:
        digest.update(b"\0")
        digest.update(text.encode())
    return digest.hexdigest()


async def keep_embedded(
    redis: Redis,
    settings: Settings,
    document_id: str,
    model: str,
    texts: Sequence[str],
    vectors: np.ndarray,
) -> bool:
    """Keep the first `len(vectors)` texts' vectors for the next run; False if Redis is
    unavailable (the next run embeds them again)."""
    key = ingest_resume_key(settings.redis_prefix, document_id)
    fields = {
        "fingerprint": fingerprint(model, texts),
        "dimension": str(vectors.shape[1]),
        "vectors": np.ascontiguousarray(vectors, dtype=np.float32).tobytes(),
    }
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=fields)
            pipe.expire(key, RESUME_TTL_SECONDS)
            await pipe.execute()
    except Exception as error:
        if dependency_failure(error) is None:
            raise
        log.warning("could not keep the vectors of document %s: %s", document_id, error)
        return False
    return True


async def take_embedded(
    redis: Redis, settings: Settings, document_id: str, model: str, texts: Sequence[str]
) -> np.ndarray | None:
    """The vectors kept for these very texts and model (removed from Redis), else None."""
    key = ingest_resume_key(settings.redis_prefix, document_id)
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(key)
            pipe.delete(key)
            kept, _ = await pipe.execute()
    except Exception as error:
        if dependency_failure(error) is None:
            raise
        return None
    if not kept or kept.get(b"fingerprint", b"").decode() != fingerprint(model, texts):
        return None
    dimension = int(kept[b"dimension"])
    vectors = np.frombuffer(kept[b"vectors"], dtype=np.float32)
    if dimension <= 0 or vectors.size % dimension or vectors.size // dimension > len(texts):
        return None
    return vectors.reshape(-1, dimension).copy()
