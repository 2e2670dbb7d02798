"""The statements the service runs regularly on tables that grow with use, each served by
an index (Tortoise indexes no foreign key): without them every one scanned its whole
table, a cost that grew with every answer, session, ledger entry or document.

- tasks (state, created_at): the task reaper's periodic `WHERE state = ? AND created_at
  < ?` (queued too long) and `WHERE state = ? AND started_at < ?` (running, heartbeat
  lapsed) read the few live tasks instead of every task ever run.
- tasks (session_id): a session's deletion sets its tasks' `session_id` to NULL (the
  foreign key's SET NULL), one lookup per deleted session.
- chat_sessions (assistant_id, user_id, created_at): a user's sessions of an assistant,
  newest first (the sessions listing), and an assistant's deletion cascading to them.
- credit_entries (user_id, id): the credits history, a user's entries newest first, and
  its count.
- api_keys (user_id, created_at): a user's keys listing.
- documents (run): ingest recovery's periodic sweep of the running documents.

tests/test_growing_table_indexes.py checks each plan; bench/bench_growing_indexes.py
measures the reaper's and the ledger's reads without and with them.
"""

from tortoise import migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0004_message_history_index")]

    initial = False

    operations = [
        ops.AddIndex(model_name="Task", index=Index(fields=["state", "created_at"])),
        ops.AddIndex(model_name="Task", index=Index(fields=["session_id"])),
        ops.AddIndex(
            model_name="ChatSession",
            index=Index(fields=["assistant_id", "user_id", "created_at"]),
        ),
        ops.AddIndex(model_name="CreditEntry", index=Index(fields=["user_id", "id"])),
        ops.AddIndex(model_name="ApiKey", index=Index(fields=["user_id", "created_at"])),
        ops.AddIndex(model_name="Document", index=Index(fields=["run"])),
    ]
