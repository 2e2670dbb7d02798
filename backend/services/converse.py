"""SwiftChat's stateless converse: a Bedrock-converse conversation turned into a chat task.

The client sends the whole conversation each time; nothing is stored in a session, so
an answer whose client disconnects is cancelled (only produced tokens are charged).
Content blocks map to provider parts: `text` as text, `image` as a data URL (vision
models only), `document` inlined as text when it is a text format; `video` is refused
(415). The conversation is fitted to the model's window like a session's (oldest turns
dropped first).
"""

from __future__ import annotations

import base64
import binascii

from arq.connections import ArqRedis

from backend.errors import BadRequest, Conflict, UnsupportedMediaType
from backend.models import Task, User
from backend.providers.base import ChatMessage
from backend.providers.registry import default_model, get_model
from backend.services import tasks
from backend.services.context import fit
from backend.settings import Settings
from schemas.swiftchat import ContentBlock, ConverseMessage, ConverseRequest

TEXT_DOCUMENTS = {"txt", "md", "csv", "html", "json", "xml"}


def decode(data: str, what: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadRequest(f"{what}: source.bytes is not valid base64") from error


def to_part(block: ContentBlock) -> dict:
    if block.text is not None:
        return {"type": "text", "text": block.text}
    if block.image is not None:
        decode(block.image.source.bytes, "image")
        url = f"data:image/{block.image.format};base64,{block.image.source.bytes}"
        return {"type": "image_url", "image_url": {"url": url}}
    if block.document is not None:
        document = block.document
        if document.format.lower() not in TEXT_DOCUMENTS:
            raise UnsupportedMediaType(
                f"Document '{document.name}' is {document.format}: only text documents ("
                + ", ".join(sorted(TEXT_DOCUMENTS))
                + ") can be sent here; convert it to text first"
            )
        text = decode(document.source.bytes, f"document '{document.name}'").decode(
            "utf-8", errors="replace"
        )
        return {"type": "text", "text": f"Document '{document.name}':\n{text}"}
    if block.video is not None:
        raise UnsupportedMediaType(
            f"A {block.video.format} video was sent: no model served here reads video; "
            "send text, images or text documents"
        )
    raise BadRequest("Each content block needs one of 'text', 'image' or 'document'")


def to_chat_message(message: ConverseMessage) -> ChatMessage:
    parts = [to_part(block) for block in message.content]
    if all(part["type"] == "text" for part in parts):
        return ChatMessage(role=message.role, content="\n".join(p["text"] for p in parts))
    return ChatMessage(role=message.role, content=parts)


async def start_converse(
    user: User,
    data: ConverseRequest,
    *,
    redis: ArqRedis,
    settings: Settings,
    reader_lease: tasks.ReaderLease | None = None,
) -> Task:
    if data.messages[-1].role != "user":
        raise BadRequest("The last message must be the user's: it is the one being answered")
    spec = get_model(data.modelId) if data.modelId else default_model()
    head = []
    system = "\n\n".join(block.text for block in data.system or [] if block.text)
    if system:
        head.append(ChatMessage(role="system", content=system))
    turns = [to_chat_message(message) for message in data.messages]
    messages = fit(head, turns[:-1], turns[-1:], spec, spec.max_output)
    return await tasks.create_stateless_task(
        user, spec.id, messages, redis=redis, settings=settings, reader_lease=reader_lease
    )


async def abandon(user: User, task_id: str, *, redis: ArqRedis, settings: Settings) -> None:
    """Stop a converse answer whose client went away: nobody can read it later (there is
    no session to store it in), so generating the rest would only spend credits."""
    try:
        await tasks.cancel_task(user, task_id, redis=redis, settings=settings)
    except Conflict:
        return
