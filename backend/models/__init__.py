"""Tortoise ORM models, one module per aggregate."""

from backend.models.app_versions import AppVersion
from backend.models.chats import Assistant, ChatSession, Message, Upload
from backend.models.credits import CodeRedemption, CreditEntry, CreditReservation, RedeemCode
from backend.models.knowledge import Dataset, Document
from backend.models.tasks import Task
from backend.models.users import ApiKey, RefreshToken, User

__all__ = [
    "ApiKey",
    "AppVersion",
    "Assistant",
    "ChatSession",
    "CodeRedemption",
    "CreditEntry",
    "CreditReservation",
    "Dataset",
    "Document",
    "Message",
    "RedeemCode",
    "RefreshToken",
    "Task",
    "Upload",
    "User",
]
