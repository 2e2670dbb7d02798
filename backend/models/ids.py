"""Public identifiers: 32 hex characters, as RAGFlow uses."""

import uuid


def new_id() -> str:
    return uuid.uuid4().hex
