"""Moved to backend/storage/: these names stay importable while callers move over."""

from backend.storage.base import FileStorage, StorageWriter
from backend.storage.configured import document_key, document_storage

__all__ = ["FileStorage", "StorageWriter", "document_key", "document_storage"]
