"""A turn on an assistant over knowledge bases, as the web process prepares it.

Retrieval runs in the chat worker (workers/jobs/knowledge.py), not here: the web process
only assembles the turn as for a plain assistant, with a marker where the prompt says
`{knowledge}`, and records what the worker needs (the question, the assistant's
datasets and retrieval settings, and how many tokens of knowledge the turn may carry).

Budget: history is fitted first, but kept out of the room the knowledge wants (at most
`top_n` chunks of the datasets' chunk size, and never more than half the prompt budget);
the knowledge then gets whatever the prompt budget has left, so a short conversation
lends it more. The reservation covers that room, so however much knowledge goes in, the
charge (prompt tokens, knowledge included, at the model's price) stays within the hold.

Multi-turn: with `refine_multiturn` and earlier turns, the worker first asks the model to
rewrite the question as a standalone one for retrieval; that call is reserved for here
and charged as prompt and completion tokens like the answer. It is skipped for the local
default model (SmolLM2 135M), which does not follow such instructions reliably: the
question is searched as asked.
"""

from __future__ import annotations

from typing import Any

from backend.models import Assistant, ChatSession, Dataset
from backend.providers.base import ChatMessage, ModelSpec
from backend.providers.catalog import ProviderKind
from backend.providers.tokens import count_message_tokens
from backend.services.context import build_context, output_tokens, prompt_budget
from schemas.chats import PromptSettings

KNOWLEDGE_MARKER = "\u27e6knowledge\u27e7"
KNOWLEDGE_SECTION = (
    f"Here is the knowledge base:\n{KNOWLEDGE_MARKER}\nThe above is the knowledge base."
)
CITATION_RULES = (
    "Each piece of the knowledge base starts with its ID as [ID:n]. After a sentence that "
    "uses a piece, cite it as [ID:n] (for example [ID:0]); cite only pieces you used."
)
DEFAULT_CHUNK_TOKENS = 512
# Per chunk: its "[ID:n] (from <document>)" header and separators.
CHUNK_OVERHEAD_TOKENS = 24
REWRITE_MAX_TOKENS = 64
REWRITE_TURNS = 6
REWRITE_INSTRUCTIONS = (
    "Rewrite the user's latest question as one standalone question that can be understood "
    "without the conversation (resolve pronouns and references). Reply with the question "
    "only, in the user's language."
)


def can_rewrite(spec: ModelSpec) -> bool:
    """Whether the model can be trusted to rewrite a question (not the tiny local one)."""
    return spec.provider != ProviderKind.LOCAL.value


def text_of(message: ChatMessage) -> str:
    if isinstance(message.content, str):
        return message.content
    return "\n".join(p.get("text", "") for p in message.content if p.get("type") == "text")


def rewrite_request(messages: list[ChatMessage], question: str) -> list[dict[str, str]] | None:
    """The rewrite call's messages, or None when there is no earlier question to resolve."""
    turns = [m for m in messages[:-1] if m.role in ("user", "assistant") and text_of(m)]
    if not any(m.role == "user" for m in turns):
        # The first question (at most after the opener) needs no rewriting.
        return None
    transcript = "\n".join(f"{m.role}: {text_of(m)}" for m in turns[-REWRITE_TURNS:])
    return [
        {"role": "system", "content": REWRITE_INSTRUCTIONS},
        {"role": "user", "content": f"{transcript}\n\nLatest question: {question}"},
    ]


async def knowledge_wanted(assistant: Assistant, prompt: PromptSettings) -> int:
    rows = await Dataset.filter(id__in=assistant.dataset_ids, owner_id=assistant.owner_id)
    chunk = max(
        [int((d.parser_config or {}).get("chunk_token_num") or 0) for d in rows]
        or [DEFAULT_CHUNK_TOKENS]
    )
    return prompt.top_n * ((chunk or DEFAULT_CHUNK_TOKENS) + CHUNK_OVERHEAD_TOKENS)


def with_section(messages: list[ChatMessage], show_quote: bool) -> list[ChatMessage]:
    """Make sure the system message holds the marker (a prompt without `{knowledge}` gets
    the knowledge appended) and, with quotes on, the citation rules."""
    extra = [] if show_quote is False else [CITATION_RULES]
    head = messages[0] if messages and messages[0].role == "system" else None
    text = head.content if head is not None and isinstance(head.content, str) else ""
    if KNOWLEDGE_MARKER not in text:
        extra.insert(0, KNOWLEDGE_SECTION)
    system = ChatMessage(role="system", content="\n\n".join([p for p in [text] if p] + extra))
    return [system, *(messages[1:] if head is not None else messages)]


async def history_room(assistant: Assistant, spec: ModelSpec, max_output: int) -> tuple[int, int]:
    """(tokens of knowledge the assistant wants, tokens to keep free of history for it)."""
    prompt = PromptSettings.model_validate(assistant.prompt or {})
    wanted = await knowledge_wanted(assistant, prompt)
    return wanted, min(wanted, prompt_budget(spec, max_output) // 2)


def planned(
    messages: list[ChatMessage],
    assistant: Assistant,
    spec: ModelSpec,
    max_output: int,
    wanted: int,
) -> tuple[list[ChatMessage], dict[str, Any], tuple[int, int]]:
    """The fitted turn (marker in place) with the section and citation rules, the
    worker's knowledge plan, and the extra (prompt, completion) tokens to reserve."""
    prompt = PromptSettings.model_validate(assistant.prompt or {})
    messages = with_section(messages, prompt.show_quote)
    budget = prompt_budget(spec, max_output)
    room = max(0, min(wanted, budget - count_message_tokens(messages)))
    question = text_of(messages[-1])
    rewrite = None
    if prompt.refine_multiturn and can_rewrite(spec):
        rewrite = rewrite_request(messages, question)
    plan = {
        "assistant_id": assistant.id,
        "question": question,
        "owner_id": assistant.owner_id,
        "dataset_ids": list(assistant.dataset_ids),
        "similarity_threshold": prompt.similarity_threshold,
        "vector_similarity_weight": round(1 - prompt.keywords_similarity_weight, 6),
        "top_n": prompt.top_n,
        "top_k": prompt.top_k,
        "rerank_id": prompt.rerank_model or None,
        "empty_response": prompt.empty_response or None,
        "show_quote": prompt.show_quote,
        "knowledge_tokens": room,
        "rewrite": rewrite,
    }
    extra = (room, 0)
    if rewrite is not None:
        asked = [ChatMessage(role=m["role"], content=m["content"]) for m in rewrite]
        extra = (room + count_message_tokens(asked), REWRITE_MAX_TOKENS)
    return messages, plan, extra


async def prepare(
    session: ChatSession,
    assistant: Assistant,
    spec: ModelSpec,
    parts: list[dict[str, Any]],
) -> tuple[list[ChatMessage], dict[str, Any], tuple[int, int]]:
    """A session turn: its messages (marker in the system message), the worker's
    knowledge plan, and the extra tokens to reserve for knowledge and the rewrite."""
    max_output = output_tokens(assistant.llm or {}, spec)
    wanted, reserved = await history_room(assistant, spec, max_output)
    messages = await build_context(
        session,
        assistant,
        spec,
        new_parts=parts,
        knowledge_slot=KNOWLEDGE_MARKER,
        reserved=reserved,
    )
    return planned(messages, assistant, spec, max_output, wanted)
