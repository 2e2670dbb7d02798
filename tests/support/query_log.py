"""The SQL statements Tortoise sends, from its own log (`tortoise.db_client` at DEBUG):
for tests that count what a path costs in statements."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

QUERY_LOG = "tortoise.db_client"
DML = ("SELECT", "INSERT", "UPDATE", "DELETE")


class _Collected(logging.Handler):
    def __init__(self, statements: list[str], verbs: tuple[str, ...] | None) -> None:
        super().__init__(logging.DEBUG)
        self.statements, self.verbs = statements, verbs

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if self.verbs is None or text.split(" ", 1)[0].upper() in self.verbs:
            self.statements.append(text)


@contextmanager
def logged_statements(verbs: tuple[str, ...] | None = None) -> Iterator[list[str]]:
    """The statements logged while inside, in order: every one, or those whose first word
    is one of `verbs` (the log also has a transaction's BEGIN/COMMIT, for one)."""
    statements: list[str] = []
    logger, handler = logging.getLogger(QUERY_LOG), _Collected(statements, verbs)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield statements
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
