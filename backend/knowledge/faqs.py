"""FAQ import (QAnything's `upload_faqs`): question/answer pairs become an FAQ document.

The pairs are written as a CSV file (question, answer) and recorded as a document of
the dataset with the `qa` chunk method, then queued for parsing like any upload: the
ingest worker reads it back as Q/A pairs, makes one chunk per pair ("Q: ...\\nA: ...",
the question kept in `questions`) and embeds each by its question, so a user's question
finds the pair by matching the FAQ's question. Being an ordinary document, an FAQ can be
listed, downloaded, re-parsed and deleted, and its progress shows in the status feed.
A question given twice in one call is imported once, with its last answer.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from arq.connections import ArqRedis

from backend.knowledge import document_runs
from backend.knowledge.datasets import get_dataset, parser_defaults
from backend.knowledge.formats import CONTENT_TYPES, DocumentFormat, ragflow_type
from backend.knowledge.parse_queue import announce_and_enqueue
from backend.models import Document, User
from backend.models.ids import new_id
from backend.settings import Settings
from backend.storage.base import FileStorage
from backend.storage.configured import document_key
from schemas.chunks import FaqPair

QA_METHOD = "qa"


def distinct(pairs: list[FaqPair]) -> list[FaqPair]:
    """One pair per question (compared without case and outer spaces), the last answer
    given, in the order the questions first appeared."""
    kept: dict[str, FaqPair] = {}
    for pair in pairs:
        kept[pair.question.strip().casefold()] = pair
    return list(kept.values())


def faq_csv(pairs: list[FaqPair]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["question", "answer"])
    writer.writerows((pair.question.strip(), pair.answer.strip()) for pair in pairs)
    return buffer.getvalue().encode()


async def import_faqs(
    user: User,
    dataset_id: str,
    pairs: list[FaqPair],
    *,
    files: FileStorage,
    redis: ArqRedis,
    settings: Settings,
) -> tuple[Document, int]:
    """Store the pairs as an FAQ document and queue it for parsing; the document (RUNNING)
    and how many pairs it holds."""
    dataset = await get_dataset(user, dataset_id)
    kept = distinct(pairs)
    content = faq_csv(kept)
    document_id = new_id()
    key = document_key(dataset.id, document_id, DocumentFormat.CSV.value)
    async with files.writing(key) as writer:
        await writer.write(content)
    name = f"FAQ {datetime.now(UTC):%Y-%m-%d %H:%M:%S} ({len(kept)} pairs).csv"
    try:
        document = await Document.create(
            id=document_id,
            dataset_id=dataset.id,
            owner_id=dataset.owner_id,
            name=name,
            location=key,
            size=len(content),
            type=ragflow_type(DocumentFormat.CSV),
            suffix=DocumentFormat.CSV.value,
            content_type=CONTENT_TYPES[DocumentFormat.CSV],
            chunk_method=QA_METHOD,
            parser_config=parser_defaults(QA_METHOD),
        )
    except BaseException:
        await files.delete(key)
        raise
    runs = await document_runs.queue_for_parsing([document])
    queued = await Document.get(id=document.id)
    await announce_and_enqueue(redis, settings, runs)
    return queued, len(kept)
