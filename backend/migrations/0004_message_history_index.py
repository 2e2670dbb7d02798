"""Messages are read a session at a time, newest first (a turn's history, the messages
list, a session's cascade delete): without an index on `session_id` each read scanned
every user's messages and sorted the matches, a cost that grew with the whole table.
The index serves `WHERE session_id = ? ORDER BY created_at DESC, id DESC` in order,
no scan and no sort (bench/bench_history_index.py)."""

from tortoise import migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0003_message_reference")]

    initial = False

    operations = [
        ops.AddIndex(
            model_name="Message",
            index=Index(fields=["session_id", "created_at", "id"]),
        ),
    ]
