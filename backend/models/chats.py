"""Assistants (RAGFlow chats / AIDeer presets), their sessions and messages."""

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from backend.models.ids import new_id
from backend.models.timestamps import UpdatedAtField


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"


class Assistant(Model):
    id = fields.CharField(max_length=32, primary_key=True, default=new_id)
    owner = fields.ForeignKeyField("models.User", related_name="assistants")
    name = fields.CharField(max_length=255)
    avatar = fields.TextField(default="")
    description = fields.TextField(default="")
    llm = fields.JSONField(default=dict)
    prompt = fields.JSONField(default=dict)
    preset_messages = fields.JSONField(default=list)
    dataset_ids = fields.JSONField(default=list)
    public = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = UpdatedAtField()

    class Meta:
        table = "assistants"


class ChatSession(Model):
    id = fields.CharField(max_length=32, primary_key=True, default=new_id)
    assistant = fields.ForeignKeyField(
        "models.Assistant", related_name="sessions", on_delete=fields.CASCADE
    )
    user = fields.ForeignKeyField("models.User", related_name="chat_sessions")
    name = fields.CharField(max_length=255, default="New session")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = UpdatedAtField()

    class Meta:
        table = "chat_sessions"
        # A user's sessions of an assistant, newest first (migration 0005).
        indexes = (("assistant_id", "user_id", "created_at"),)


class Message(Model):
    id = fields.CharField(max_length=32, primary_key=True, default=new_id)
    session = fields.ForeignKeyField(
        "models.ChatSession", related_name="messages", on_delete=fields.CASCADE
    )
    role = fields.CharEnumField(Role, max_length=16)
    content = fields.JSONField(default=list)
    # An answer over knowledge bases: its sources (schemas.events.Reference), or None.
    reference = fields.JSONField(null=True)
    visible = fields.BooleanField(default=True)
    prompt_tokens = fields.IntField(default=0)
    completion_tokens = fields.IntField(default=0)
    task_id = fields.CharField(max_length=32, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "messages"
        ordering = ["created_at"]
        # A session's messages newest first, in index order (migration 0004).
        indexes = (("session_id", "created_at", "id"),)


class Upload(Model):
    """An uploaded file owned by a user (chat images for now)."""

    id = fields.CharField(max_length=32, primary_key=True, default=new_id)
    user = fields.ForeignKeyField("models.User", related_name="uploads")
    content_type = fields.CharField(max_length=128)
    size = fields.BigIntField()
    path = fields.CharField(max_length=512)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "uploads"
