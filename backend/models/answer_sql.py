"""The SQL text of an answer's two transactions (`backend.models.answer_writes`), built
once at import.

SQLite's statements run one after another in aiosqlite's thread, between BEGIN IMMEDIATE
and COMMIT; PostgreSQL's transaction is one statement of data-modifying CTEs, which all
see the same snapshot and commit or fail together. Both name their parameters
(`:name`); asyncpg's `$n` are numbered from the names once (`numbered`). The columns are
every column the ORM's INSERT names, with the models' defaults where the answer has
nothing to say (tests/test_answer_writes.py compares the rows with the ORM's).
"""

from __future__ import annotations

import re

from backend.models.chats import Role
from backend.models.credits import CreditReason, ReservationState
from backend.models.tasks import TaskState

ENTRY = "credit_entries (delta, reason, balance_after, task_id, code, note, created_at, user_id)"
RESERVATION = (
    "credit_reservations (id, amount, charged, state, task_id, created_at, finished_at, user_id)"
)
MESSAGE = (
    "messages (id, role, content, reference, visible, prompt_tokens, completion_tokens, "
    "task_id, created_at, session_id)"
)
TASK = (
    "tasks (id, model, state, request, reservation_id, user_message_id, message_id, "
    "prompt_tokens, completion_tokens, cost, error_code, error_message, attempts, "
    "created_at, started_at, finished_at, session_id, user_id)"
)
RESERVED, SETTLED = ReservationState.RESERVED.value, ReservationState.SETTLED.value
RESERVE, RELEASE = CreditReason.RESERVE.value, CreditReason.RELEASE.value

SQLITE_DEBIT = (
    "UPDATE users SET credits = credits - :hold WHERE id = :user_id AND credits >= :hold "
    "RETURNING credits"
)
SQLITE_ENTRY = f"INSERT INTO {ENTRY} VALUES (?, ?, ?, ?, NULL, NULL, ?, ?)"
SQLITE_RESERVATION = (
    f"INSERT INTO {RESERVATION} VALUES (:reservation_id, :hold, NULL, '{RESERVED}', :task_id, "
    ":now, NULL, :user_id)"
)
SQLITE_MESSAGE = (
    f"INSERT INTO {MESSAGE} VALUES (:message_id, :role, :content, :reference, 1, "
    ":prompt_tokens, :completion_tokens, :task_id, :now, :session_id)"
)
SQLITE_TASK = (
    f"INSERT INTO {TASK} VALUES (:task_id, :model, '{TaskState.QUEUED.value}', :request, "
    ":reservation_id, :message_id, NULL, 0, 0, 0, NULL, NULL, 0, :now, NULL, NULL, "
    ":session_id, :user_id)"
)
# The transition only when the reservation (if any) is held for at least the cost.
SQLITE_TRANSITION = (
    "UPDATE tasks SET state = :state, finished_at = :now, prompt_tokens = :prompt_tokens, "
    "completion_tokens = :completion_tokens, cost = :cost, message_id = :message_id "
    "WHERE id = :task_id AND state = :expected AND (:reservation_id IS NULL OR EXISTS ("
    "SELECT 1 FROM credit_reservations WHERE id = :reservation_id "
    f"AND state = '{RESERVED}' AND amount >= :cost))"
)
SQLITE_CLOSE = (
    f"UPDATE credit_reservations SET state = '{SETTLED}', charged = :cost, finished_at = :now "
    f"WHERE id = :reservation_id AND state = '{RESERVED}' RETURNING user_id, task_id, "
    "amount - :cost"
)
SQLITE_REFUND = "UPDATE users SET credits = credits + ? WHERE id = ? RETURNING credits"

# `held` has a row when the hold is taken: a free model's (0) touches no balance, a
# priced one's only a balance that covers it.
PG_RECORD = f"""WITH debited AS (
    UPDATE users SET credits = credits - :hold::bigint
    WHERE id = :user_id::int AND credits >= :hold AND :hold > 0 RETURNING credits
), held AS (SELECT 1 WHERE :hold = 0 UNION ALL SELECT 1 FROM debited
), entry AS (INSERT INTO {ENTRY} SELECT -:hold, '{RESERVE}', credits, :task_id::varchar,
    NULL, NULL, :now::timestamptz, :user_id FROM debited
), reservation AS (INSERT INTO {RESERVATION} SELECT :reservation_id::varchar, :hold, NULL,
    '{RESERVED}', :task_id, :now, NULL, :user_id FROM held
), message AS (INSERT INTO {MESSAGE} SELECT :message_id::varchar, '{Role.USER.value}',
    :content::jsonb, NULL, TRUE, 0, 0, :task_id, :now, :session_id::varchar
    FROM held WHERE :message_id IS NOT NULL
), task AS (INSERT INTO {TASK} SELECT :task_id, :model::varchar, '{TaskState.QUEUED.value}',
    :request::jsonb, :reservation_id, :message_id, NULL, 0, 0, 0, NULL, NULL, 0, :now, NULL,
    NULL, :session_id, :user_id FROM held
) SELECT count(*) AS done FROM held"""
# Only the task's winning ender closes its reservation: one `moved` found held still is.
PG_SETTLE = f"""WITH moved AS (
    UPDATE tasks SET state = :state::varchar, finished_at = :now::timestamptz,
        prompt_tokens = :prompt_tokens::int, completion_tokens = :completion_tokens::int,
        cost = :cost::bigint, message_id = :message_id::varchar
    WHERE id = :task_id::varchar AND state = :expected::varchar AND (
        :reservation_id::varchar IS NULL OR EXISTS (SELECT 1 FROM credit_reservations
        WHERE id = :reservation_id AND state = '{RESERVED}' AND amount >= :cost))
    RETURNING id
), closed AS (
    UPDATE credit_reservations SET state = '{SETTLED}', charged = :cost, finished_at = :now
    WHERE id = :reservation_id AND state = '{RESERVED}' AND EXISTS (SELECT 1 FROM moved)
    RETURNING user_id, task_id, amount - :cost AS refund
), refunded AS (
    UPDATE users SET credits = users.credits + closed.refund FROM closed
    WHERE users.id = closed.user_id AND closed.refund > 0
    RETURNING users.id, users.credits, closed.refund, closed.task_id
), entry AS (INSERT INTO {ENTRY} SELECT refund, '{RELEASE}', credits, task_id, NULL, NULL,
    :now, id FROM refunded
), message AS (INSERT INTO {MESSAGE} SELECT :message_id, '{Role.ASSISTANT.value}',
    :content::jsonb, :reference::jsonb, TRUE, :prompt_tokens, :completion_tokens, :task_id,
    :now, :session_id::varchar FROM moved WHERE :message_id IS NOT NULL
) SELECT count(*) AS done FROM moved"""


def numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """asyncpg's `$n` for each `:name` (not `::type`), and the names in their order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    return re.sub(r"(?<!:):(\w+)", number, sql), tuple(names)


PG_RECORD_NUMBERED, PG_SETTLE_NUMBERED = numbered(PG_RECORD), numbered(PG_SETTLE)
