"""The chat worker's part of a turn over knowledge bases: retrieve, then fill the prompt.

The web process recorded a plan (backend/services/knowledge_turns.py). Here, before any
token: the question (rewritten as a standalone one first, when the plan says so) is
searched in the assistant's datasets through the retrieval service with the assistant's
settings; the best `top_n` chunks that fit the plan's token room replace the marker in
the system message, numbered `[ID:n]` in order; and the reference (those chunks, with
their documents) is ready to be sent before the first token. When nothing passes the
threshold and the assistant has an `empty_response`, that is the answer and the model is
not called.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from backend.models import Dataset
from backend.providers.base import ChatMessage, ChatRequest, Delta, SamplingParams, Usage
from backend.providers.registry import provider_for
from backend.providers.tokens import count_message_tokens, count_tokens
from backend.search.retrieval import retrieve
from backend.services.knowledge_turns import KNOWLEDGE_MARKER, REWRITE_MAX_TOKENS
from schemas.events import DocumentAggregate, Reference, ReferenceChunk
from schemas.retrieval import RetrievalRequest, RetrievalResult

CITATION = re.compile(r"\[ID:(\d+)\]")
QUESTION_MAX_CHARS = 8192
NOTHING_FOUND = "(Nothing relevant was found in the knowledge base.)"


@dataclass(frozen=True)
class KnowledgeTurn:
    """The request to send (knowledge filled in), its prompt tokens, what the rewrite
    call used, the chunks given (the reference) and, when nothing was found and the
    assistant says what to answer then, that answer."""

    request: ChatRequest
    prompt_tokens: int
    rewrite_usage: Usage
    reference: Reference
    empty_answer: str | None = None


async def rewritten(request: ChatRequest, plan: dict[str, Any]) -> tuple[str, Usage]:
    """The plan's question, made standalone by the model when the plan asks for it."""
    question = plan["question"]
    if not plan.get("rewrite"):
        return question, Usage(0, 0)
    asked = ChatRequest(
        model=request.model,
        messages=[ChatMessage(role=m["role"], content=m["content"]) for m in plan["rewrite"]],
        params=SamplingParams(temperature=0.0, max_tokens=REWRITE_MAX_TOKENS),
    )
    text, usage = "", None
    async for event in provider_for(request.model).stream(asked):
        if isinstance(event, Delta):
            text += event.text
        elif isinstance(event, Usage):
            usage = usage or event
    used = usage or Usage(count_message_tokens(asked.messages), count_tokens(text))
    return (text.strip() or question), used


async def search(plan: dict[str, Any], question: str) -> RetrievalResult:
    """The retrieval service over the assistant's datasets that still exist."""
    existing = set(
        await Dataset.filter(id__in=plan["dataset_ids"], owner_id=plan["owner_id"]).values_list(
            "id", flat=True
        )
    )
    dataset_ids = [d for d in plan["dataset_ids"] if d in existing]
    if not dataset_ids or not question.strip():
        return RetrievalResult(chunks=[], doc_aggs=[], total=0)
    return await retrieve(
        plan["owner_id"],
        RetrievalRequest(
            question=question[:QUESTION_MAX_CHARS],
            dataset_ids=dataset_ids,
            page=1,
            page_size=plan["top_n"],
            similarity_threshold=plan["similarity_threshold"],
            vector_similarity_weight=plan["vector_similarity_weight"],
            top_k=plan["top_k"],
            rerank_id=plan["rerank_id"],
        ),
    )


def block(index: int, chunk: ReferenceChunk) -> str:
    return f"[ID:{index}] (from {chunk.document_name})\n{chunk.content.strip()}"


def doc_aggs(chunks: list[ReferenceChunk]) -> list[DocumentAggregate]:
    counts = Counter(chunk.document_id for chunk in chunks)
    names = {chunk.document_id: chunk.document_name for chunk in chunks}
    return [
        DocumentAggregate(doc_name=names[doc_id], doc_id=doc_id, count=count)
        for doc_id, count in counts.most_common()
    ]


def fitted(found: list[ReferenceChunk], room: int) -> tuple[list[ReferenceChunk], str]:
    """The best chunks, in order, whose blocks fit `room` tokens, and the knowledge text."""
    kept, blocks, used = [], [], 0
    for chunk in found:
        text = block(len(kept), chunk)
        cost = count_tokens(text) + 2
        if used + cost > room:
            break
        kept.append(chunk)
        blocks.append(text)
        used += cost
    return kept, "\n\n".join(blocks)


def filled(request: ChatRequest, knowledge: str) -> ChatRequest:
    system, *rest = request.messages
    content = str(system.content).replace(KNOWLEDGE_MARKER, knowledge or NOTHING_FOUND)
    return replace(request, messages=[ChatMessage(role="system", content=content), *rest])


async def prepare(request: ChatRequest, plan: dict[str, Any]) -> KnowledgeTurn:
    question, rewrite_usage = await rewritten(request, plan)
    result = await search(plan, question)
    found = [
        ReferenceChunk(
            id=c.id,
            content=c.content,
            document_id=c.document_id,
            document_name=c.document_keyword,
            dataset_id=c.dataset_id,
            image_id=c.image_id,
            positions=c.positions,
            similarity=c.similarity,
            vector_similarity=c.vector_similarity,
            term_similarity=c.term_similarity,
        )
        for c in result.chunks
    ]
    kept, knowledge = fitted(found, plan["knowledge_tokens"])
    reference = Reference(total=result.total, chunks=kept, doc_aggs=doc_aggs(kept))
    if not found and plan.get("empty_response"):
        return KnowledgeTurn(request, 0, rewrite_usage, reference, plan["empty_response"])
    sent = filled(request, knowledge)
    return KnowledgeTurn(sent, count_message_tokens(sent.messages), rewrite_usage, reference)


def cited(reference: Reference, answer: str) -> Reference:
    """The final reference: the chunks as given (so `[ID:n]` still names `chunks[n]`),
    `doc_aggs` narrowed to the documents the answer cites (all of them if it cites none,
    as RAGFlow does)."""
    used = {int(n) for n in CITATION.findall(answer) if int(n) < len(reference.chunks)}
    if not used:
        return reference
    return reference.model_copy(
        update={"doc_aggs": doc_aggs([reference.chunks[n] for n in sorted(used)])}
    )
