"""Assistants (RAGFlow chats / AIDeer presets), sessions and messages: the wire shapes.

Field names and defaults follow RAGFlow's HTTP API, so RAGFlow clients work unchanged;
`preset_messages` and `public` are AIDeer's additions.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)

from schemas.common import Pagination, RequestBody, exactly_one_of
from schemas.events import Reference
from schemas.ids import MAX_BATCH_IDS, PublicId, UniqueIds

NAME_MAX_CHARS = 255
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX_CHARS)
]

DEFAULT_PROMPT = (
    "You are a helpful assistant. Answer the user's questions accurately and concisely, "
    "taking the chat history into account."
)
DEFAULT_OPENER = "Hi! I'm your assistant. What can I do for you?"
DEFAULT_EMPTY_RESPONSE = "Sorry! No relevant content was found in the knowledge base!"
# RAGFlow's default system prompt for an assistant over datasets (its SDK's since v0.23),
# taken when an assistant is created with datasets and no prompt of its own.
DEFAULT_KNOWLEDGE_PROMPT = (
    "You are an intelligent assistant. Your primary function is to answer questions based "
    "strictly on the provided knowledge base.\n\n"
    "**Essential Rules:**\n"
    "- Your answer must be derived **solely** from this knowledge base: `{knowledge}`.\n"
    "- **When information is available**: Summarize the content to give a detailed answer.\n"
    "- **When information is unavailable**: Your response must contain this exact sentence: "
    '"The answer you are looking for is not found in the knowledge base!"\n'
    "- **Always consider** the entire conversation history."
)


class OrderBy(StrEnum):
    CREATE_TIME = "create_time"
    UPDATE_TIME = "update_time"


class ListQuery(Pagination):
    """RAGFlow's list filters: page, page_size, orderby, desc, name, id."""

    page_size: int = Field(30, ge=1, le=1024)
    orderby: OrderBy = OrderBy.CREATE_TIME
    desc: bool = True
    # As long as the column it filters (a longer name cannot match; the database would
    # refuse to compare it): 422 at the edge.
    name: str | None = Field(None, max_length=NAME_MAX_CHARS, description="Exactly this name")
    id: PublicId | None = None


class DeleteIds(RequestBody):
    """Assistants or sessions to delete: at least one id, each once (RAGFlow's SDK sends
    the ids it was given; there is no "delete all" here)."""

    model_config = ConfigDict(extra="forbid")

    ids: UniqueIds = Field(min_length=1, max_length=MAX_BATCH_IDS, description="IDs to delete")


class LlmSettings(RequestBody):
    """Sampling settings; RAGFlow's defaults. `model_name` None means the default model."""

    model_name: str | None = None
    temperature: float = Field(0.1, ge=0, le=2)
    top_p: float = Field(0.3, ge=0, le=1)
    presence_penalty: float = Field(0.4, ge=-2, le=2)
    frequency_penalty: float = Field(0.7, ge=-2, le=2)
    max_tokens: int = Field(512, ge=1)


class LlmUpdate(RequestBody):
    model_name: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    max_tokens: int | None = Field(None, ge=1)


class PromptVariable(RequestBody):
    key: str = Field(min_length=1)
    optional: StrictBool = True


def default_variables() -> list[PromptVariable]:
    return [PromptVariable(key="knowledge", optional=True)]


class PromptSettings(RequestBody):
    """RAGFlow's prompt block. The retrieval fields take effect once datasets are attached:
    `top_k` candidates are fetched, those at `similarity_threshold` or above are kept and
    the best `top_n` go into `{knowledge}` in `prompt`. `empty_response` (None or "" to
    let the model answer anyway) is the answer when none pass, sent without calling the
    model. `refine_multiturn` rewrites a follow-up into a standalone question for
    retrieval (skipped for the local default model, too small to do it reliably)."""

    prompt: str = DEFAULT_PROMPT
    opener: str = DEFAULT_OPENER
    empty_response: str | None = DEFAULT_EMPTY_RESPONSE
    show_quote: StrictBool = True
    variables: list[PromptVariable] = Field(default_factory=default_variables)
    similarity_threshold: float = Field(0.2, ge=0, le=1)
    keywords_similarity_weight: float = Field(0.7, ge=0, le=1)
    top_n: int = Field(6, ge=1, le=1024)
    top_k: int = Field(1024, ge=1, le=8192)
    rerank_model: str = ""
    refine_multiturn: StrictBool = True
    tts: StrictBool = False


class PromptUpdate(RequestBody):
    prompt: str | None = None
    opener: str | None = None
    empty_response: str | None = None
    show_quote: StrictBool | None = None
    variables: list[PromptVariable] | None = None
    similarity_threshold: float | None = Field(None, ge=0, le=1)
    keywords_similarity_weight: float | None = Field(None, ge=0, le=1)
    top_n: int | None = Field(None, ge=1, le=1024)
    top_k: int | None = Field(None, ge=1, le=8192)
    rerank_model: str | None = None
    refine_multiturn: StrictBool | None = None
    tts: StrictBool | None = None


class PresetMessage(RequestBody):
    """A system instruction or a few-shot turn sent before the conversation."""

    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1)


class AssistantCreate(RequestBody):
    name: Name
    avatar: str = ""
    description: str = ""
    llm: LlmSettings = Field(default_factory=LlmSettings)
    prompt: PromptSettings = Field(default_factory=PromptSettings)
    dataset_ids: list[PublicId] = Field(default_factory=list, max_length=MAX_BATCH_IDS)
    preset_messages: list[PresetMessage] = Field(default_factory=list)
    public: StrictBool = False


class AssistantUpdate(RequestBody):
    """Only the fields sent change; `llm` and `prompt` are merged key by key, as in RAGFlow."""

    name: Name | None = None
    avatar: str | None = None
    description: str | None = None
    llm: LlmUpdate | None = None
    prompt: PromptUpdate | None = None
    dataset_ids: list[PublicId] | None = Field(None, max_length=MAX_BATCH_IDS)
    preset_messages: list[PresetMessage] | None = None
    public: StrictBool | None = None


class AssistantDataset(BaseModel):
    """A dataset an assistant answers from, as its list entry names it."""

    id: str
    name: str
    embedding_model: str


class AssistantOut(BaseModel):
    """RAGFlow's chat object (create, update, list and read answer the same fields)."""

    id: str
    name: str
    avatar: str
    description: str
    language: str = "English"
    llm: LlmSettings
    prompt: PromptSettings
    prompt_type: str = "simple"
    top_k: int = Field(description="The same as prompt.top_k")
    do_refer: str = Field(description="RAGFlow's '1'/'0' form of prompt.show_quote")
    dataset_ids: list[str]
    datasets: list[AssistantDataset]
    kb_names: list[str] = Field(description="The datasets' names, in dataset_ids order")
    preset_messages: list[PresetMessage]
    public: bool
    owner_id: int
    tenant_id: str = Field(description="The owner's user id")
    status: str = Field("1", description="RAGFlow's validity flag; always '1'")
    create_time: int = Field(description="Milliseconds since the epoch")
    create_date: str = Field(description="RFC 1123 date, as RAGFlow")
    update_time: int = Field(description="Milliseconds since the epoch")
    update_date: str


class TextPart(RequestBody):
    type: Literal["text"] = "text"
    text: str


class ImagePart(RequestBody):
    """An image by URL (http(s) or data URL) or by an uploaded image's id: `upload_id`,
    or the URL `upload:<id>`. Either must be the sender's own upload, and is stored as
    `upload_id` (backend/services/upload_access.py)."""

    type: Literal["image"] = "image"
    url: str | None = None
    upload_id: PublicId | None = None

    @model_validator(mode="after")
    def one_source(self) -> ImagePart:
        if (self.url is None) == (self.upload_id is None):
            raise ValueError("an image part needs exactly one of 'url' or 'upload_id'")
        return self


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class MessageRole(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"


class MessageCreate(RequestBody):
    """`content` (a string or parts) or RAGFlow's `question`; `stream: true` starts the answer."""

    model_config = ConfigDict(
        json_schema_extra=exactly_one_of(
            content={"type": ["string", "array"]}, question={"type": "string"}
        )
    )

    content: str | list[ContentPart] | None = None
    question: str | None = None
    role: MessageRole = MessageRole.USER
    visible: StrictBool = True
    stream: StrictBool = False

    @model_validator(mode="after")
    def one_body(self) -> MessageCreate:
        if (self.content is None) == (self.question is None):
            raise ValueError("send exactly one of 'content' or 'question'")
        if isinstance(self.content, list) and not self.content:
            raise ValueError("content has no parts")
        text = self.question if self.question is not None else self.content
        if isinstance(text, str) and not text.strip():
            raise ValueError("the message is empty")
        return self

    def parts(self) -> list[dict]:
        """The content as stored: a list of part dicts."""
        body = self.question if self.question is not None else self.content
        if isinstance(body, str):
            return [{"type": "text", "text": body}]
        return [part.model_dump(exclude_none=True) for part in body]


class MessageOut(BaseModel):
    id: str
    role: MessageRole
    content: list[ContentPart]
    reference: Reference | None = Field(
        None, description="An answer over knowledge bases: the sources it was given and cites"
    )
    visible: bool
    prompt_tokens: int
    completion_tokens: int
    task_id: str | None
    created_at: datetime


class MessageListQuery(Pagination):
    page_size: int = Field(50, ge=1, le=1000)
    include_hidden: bool = False


class MessagePage(BaseModel):
    items: list[MessageOut]
    total: int
    page: int
    page_size: int


class SessionCreate(RequestBody):
    name: Name = "New session"


class SessionUpdate(RequestBody):
    name: Name


class SessionOut(BaseModel):
    id: str
    chat_id: str
    name: str
    messages: list[MessageOut] = Field(description="The session's visible messages, oldest first")
    create_time: int = Field(description="Milliseconds since the epoch")
    update_time: int = Field(description="Milliseconds since the epoch")


class CompletionRequest(RequestBody):
    """RAGFlow's converse call: without `session_id` a new session is started."""

    question: str = Field(min_length=1)
    stream: StrictBool = True
    session_id: PublicId | None = None


class CompletionAnswer(BaseModel):
    answer: str
    reference: dict = Field(
        default_factory=dict,
        description="The chunks the answer cites and per-document aggregates; {} without datasets",
    )
    audio_binary: None = None
    id: str | None = Field(description="The stored answer message's id")
    session_id: str
    chat_id: str
