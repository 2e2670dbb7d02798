"""Context assembly: what a model is sent for one turn, fitted to its context window.

Order: one system message (the assistant's prompt plus its system preset messages),
the few-shot preset turns, then as much of the session's history as fits, newest
kept and oldest dropped whole, then the new user message.

Budget: `context_window - max_output - safety margin` tokens, counted with tiktoken
(backend/providers/tokens.py). The margin (16 tokens + 1% of the window) absorbs the
difference between tiktoken and the model's own tokenizer. The prompt, presets and the
newest message are never cut: if they alone exceed the budget the turn is refused with
413 and a message saying how much to shorten, rather than sending a request the model
would reject for length or silently answering a truncated question.

Images become image parts only for vision models; for text-only models earlier images
are replaced by a short placeholder. An upload goes in as a reference (`upload_url`), so
the task row stays small; the worker inlines it as a data URL when it sends the turn.
Only the session owner's uploads are referenced (`upload_access`): a stored part naming
anyone else's upload, or one since deleted, becomes a short note.
"""

from __future__ import annotations

from typing import Any

from backend.errors import PayloadTooLarge
from backend.models import Assistant, ChatSession
from backend.models.lean_reads import history_page
from backend.providers.base import Capability, ChatMessage, ModelSpec
from backend.providers.tokens import count_message_tokens
from backend.services.upload_access import (
    MISSING_IMAGE,
    owned_upload,
    referenced_upload,
    upload_url,
)

IMAGE_PLACEHOLDER = "[image]"
# History is read newest first in pages of this many messages, until the window is full.
HISTORY_PAGE = 64
KNOWLEDGE_VARIABLE = "{knowledge}"


def output_tokens(llm: dict[str, Any], spec: ModelSpec) -> int:
    """Tokens reserved for the answer: the assistant's max_tokens, capped by the model."""
    requested = llm.get("max_tokens")
    return min(requested, spec.max_output) if requested else spec.max_output


def safety_margin(spec: ModelSpec) -> int:
    return 16 + spec.context_window // 100


def prompt_budget(spec: ModelSpec, max_output: int) -> int:
    """How many prompt tokens a request to this model may carry."""
    return spec.context_window - max_output - safety_margin(spec)


def message_cost(message: ChatMessage) -> int:
    """Tokens one message adds to a request (the per-request overhead counted once)."""
    return count_message_tokens([message]) - count_message_tokens([])


def fit(
    head: list[ChatMessage],
    history: list[ChatMessage],
    newest: list[ChatMessage],
    spec: ModelSpec,
    max_output: int,
    reserved: int = 0,
) -> list[ChatMessage]:
    """`head` + the most recent suffix of `history` that fits + `newest`, leaving
    `reserved` tokens free for history (retrieved knowledge goes there).

    Raises 413 when `head` and `newest` alone do not fit.
    """
    budget = prompt_budget(spec, max_output)
    used = count_message_tokens(head + newest)
    if used > budget:
        raise PayloadTooLarge(
            f"The conversation is too long for model '{spec.id}': the prompt, preset "
            f"messages and newest message take {used} tokens but at most {budget} fit "
            f"(context window {spec.context_window}, {max_output} reserved for the answer). "
            f"Shorten the message by at least {used - budget} tokens, lower llm.max_tokens, "
            "or use a model with a larger context window"
        )
    kept: list[ChatMessage] = []
    for message in reversed(history):
        cost = message_cost(message)
        if used + cost > budget - reserved:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    return head + kept + newest


def system_text(assistant: Assistant, knowledge_slot: str = "") -> str:
    """The prompt plus system presets. `{knowledge}` is replaced by `knowledge_slot`: empty
    for a plain assistant; for one over datasets, the instructions the chat worker fills
    with retrieved chunks (backend/services/knowledge_turns.py)."""
    prompt = str((assistant.prompt or {}).get("prompt") or "")
    pieces = [prompt.replace(KNOWLEDGE_VARIABLE, knowledge_slot).strip()]
    pieces += [
        preset["content"]
        for preset in assistant.preset_messages or []
        if preset.get("role") == "system"
    ]
    return "\n\n".join(piece for piece in pieces if piece)


def preamble(assistant: Assistant, knowledge_slot: str = "") -> list[ChatMessage]:
    head = []
    system = system_text(assistant, knowledge_slot)
    if system:
        head.append(ChatMessage(role="system", content=system))
    head += [
        ChatMessage(role=preset["role"], content=preset["content"])
        for preset in assistant.preset_messages or []
        if preset.get("role") != "system"
    ]
    return head


async def image_part(part: dict[str, Any], owner_id: int) -> dict[str, Any]:
    upload_id = referenced_upload(part)
    if upload_id is not None:
        url = upload_url(upload_id) if await owned_upload(owner_id, upload_id) else None
    else:
        url = part.get("url")
    if not url:
        return {"type": "text", "text": MISSING_IMAGE}
    return {"type": "image_url", "image_url": {"url": url}}


async def render(
    parts: list[dict[str, Any]], vision: bool, owner_id: int
) -> str | list[dict[str, Any]]:
    """Stored content parts as provider content: a string unless images go along."""
    if vision and any(part.get("type") == "image" for part in parts):
        rendered = []
        for part in parts:
            if part.get("type") == "image":
                rendered.append(await image_part(part, owner_id))
            else:
                rendered.append({"type": "text", "text": part.get("text", "")})
        return rendered
    texts = [
        part.get("text", "") if part.get("type") == "text" else IMAGE_PLACEHOLDER for part in parts
    ]
    return "\n".join(text for text in texts if text)


async def to_chat_message(
    role: str, parts: list[dict[str, Any]], vision: bool, owner_id: int
) -> ChatMessage:
    return ChatMessage(role=role, content=await render(parts, vision, owner_id))


async def recent_history(session: ChatSession, vision: bool, budget: int) -> list[ChatMessage]:
    """The session's newest messages, oldest first: enough to fill `budget` tokens, and
    one more.

    Read newest first a page at a time, so a turn in a session thousands of messages
    long reads and counts only what could reach the model.
    """
    newest_first: list[ChatMessage] = []
    spent = 0
    offset = 0
    while spent <= budget:
        # Only the two columns a turn needs: no model instances, no timestamps parsed,
        # and SQL built once (backend/models/lean_reads.py).
        page = await history_page(session.id, HISTORY_PAGE, offset)
        for role, content in page:
            message = await to_chat_message(str(role), content, vision, session.user_id)
            if not message.content:
                continue
            newest_first.append(message)
            spent += message_cost(message)
            if spent > budget:
                break
        if len(page) < HISTORY_PAGE:
            break
        offset += HISTORY_PAGE
    newest_first.reverse()
    return newest_first


async def build_context(
    session: ChatSession,
    assistant: Assistant,
    spec: ModelSpec,
    *,
    new_parts: list[dict[str, Any]] | None = None,
    knowledge_slot: str = "",
    reserved: int = 0,
) -> list[ChatMessage]:
    """The messages to send for the next answer in `session`.

    `new_parts` is the user's new message when it is not stored yet; without it the
    newest stored message is the one being answered. `knowledge_slot` goes where the
    prompt says `{knowledge}`; `reserved` tokens are kept free of history for it.
    """
    vision = Capability.VISION in spec.capabilities
    max_output = output_tokens(assistant.llm or {}, spec)
    history = await recent_history(session, vision, prompt_budget(spec, max_output))
    if new_parts is not None:
        newest = [await to_chat_message("user", new_parts, vision, session.user_id)]
    else:
        newest, history = history[-1:], history[:-1]
    return fit(preamble(assistant, knowledge_slot), history, newest, spec, max_output, reserved)
