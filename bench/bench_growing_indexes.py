"""The two hottest statements migration 0005 serves, on a SQLite database without its
indexes next to the same database with them, alternating round by round in one process:

- the task reaper's periodic read of the queued tasks too old to live
  (`backend.services.task_recovery.reap_unstarted`, every reaper pass, on a table that
  holds every task ever run: one per answer);
- the credits history page (`backend.services.credits.ledger`: a user's 30 newest ledger
  entries and their count; two entries per answer).

Each table holds `--rows` rows (interleaved users, all but a handful of tasks finished);
the statements are the product's, as Tortoise renders them, on a read-only connection.
Prints each side's plan, CPU per read old and new and the ratio, at each table size, and
what the indexes cost an answer's writes to these tables (a task inserted, claimed,
settled; two ledger entries), in CPU time.

Usage: python -m bench.bench_growing_indexes [--rounds N] [--runs N] [--rows 3000,30000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import tempfile
from pathlib import Path

from bench.alternation import us_per_call
from bench.service import copy_without_indexes, migrated_database

REAPER = (
    'SELECT "id" "id","state" "state","session_id" "session_id","reservation_id" '
    '"reservation_id","started_at" "started_at","created_at" "created_at" FROM "tasks" '
    'WHERE "state"=? AND "created_at"<?'
)
LEDGER_PAGE = (
    'SELECT "user_id","reason","code","balance_after","id","task_id","created_at","delta",'
    '"note" FROM "credit_entries" WHERE "user_id"=? ORDER BY "id" DESC LIMIT ? OFFSET ?'
)
LEDGER_COUNT = 'SELECT COUNT(*) FROM "credit_entries" WHERE "user_id"=?'
# The indexes 0005 adds that these statements use: (table, columns as in their DDL).
INDEXES = [("tasks", '("state", "created_at")'), ("credit_entries", '("user_id", "id")')]
USERS_PER_ROWS = 60  # a user's share of the rows: 60 ledger entries (30 answers)


def stamp(n: int) -> str:
    return f"2026-12-06 {n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}.{n:06d}+00:00"


def fill(path: Path, rows: int) -> int:
    """`rows` tasks (all finished but five queued and five running) and `rows` ledger
    entries over rows/60 users; returns the number of users. Foreign keys are off on this
    connection: the statements read these two tables alone."""
    users = max(1, rows // USERS_PER_ROWS)
    db = sqlite3.connect(path)
    db.executemany(
        "INSERT INTO tasks (id, user_id, model, state, request, prompt_tokens, "
        "completion_tokens, cost, attempts, created_at, started_at, finished_at) "
        "VALUES (?, ?, 'bench-model', ?, '{}', 10, 20, 30, 1, ?, ?, ?)",
        (
            (
                f"t{n:031d}",
                n % users,
                "queued"
                if n % (rows // 5) == 1
                else "running"
                if n % (rows // 5) == 2
                else "succeeded",
                stamp(n),
                stamp(n),
                stamp(n + 1),
            )
            for n in range(rows)
        ),
    )
    db.executemany(
        "INSERT INTO credit_entries (id, user_id, delta, reason, balance_after, task_id, "
        "created_at) VALUES (?, ?, ?, ?, 1000, ?, ?)",
        (
            (
                n + 1,
                n % users,
                -30 if n % 2 else 30,
                "reserve" if n % 2 else "release",
                f"t{n:031d}",
                stamp(n),
            )
            for n in range(rows)
        ),
    )
    db.commit()
    db.close()
    return users


def plans(path: Path) -> str:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    shown = []
    for sql, args in ((REAPER, ["queued", "x"]), (LEDGER_PAGE, [1, 30, 0])):
        shown.append("; ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", args)))
    db.close()
    return " || ".join(shown)


def readers(path: Path, users: int):
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    pick = random.Random(16).randrange

    async def reap() -> None:
        connection.execute(REAPER, ["queued", stamp(10**9)]).fetchall()

    async def ledger() -> None:
        user = pick(users)
        connection.execute(LEDGER_PAGE, [user, 30, 0]).fetchall()
        connection.execute(LEDGER_COUNT, [user]).fetchall()

    return reap, ledger


def writer(path: Path, users: int, side: str):
    """An answer's writes to these two tables: its task inserted, claimed and settled, its
    reserve and release entries; what the indexes cost, in a transaction per answer."""
    connection = sqlite3.connect(path, isolation_level=None)
    counter = iter(range(10**9))

    async def answer() -> None:
        n = next(counter)
        task, user = f"w{side}{n:029d}", n % users
        connection.execute("BEGIN")
        connection.execute(
            "INSERT INTO tasks (id, user_id, model, state, request, prompt_tokens, "
            "completion_tokens, cost, attempts, created_at) "
            "VALUES (?, ?, 'bench-model', 'queued', '{}', 0, 0, 0, 0, ?)",
            [task, user, stamp(n)],
        )
        connection.execute(
            "INSERT INTO credit_entries (user_id, delta, reason, balance_after, task_id, "
            "created_at) VALUES (?, -30, 'reserve', 1000, ?, ?)",
            [user, task, stamp(n)],
        )
        connection.execute(
            "UPDATE tasks SET state='running', started_at=? WHERE id=?", [stamp(n), task]
        )
        connection.execute(
            "UPDATE tasks SET state='succeeded', finished_at=? WHERE id=?", [stamp(n), task]
        )
        connection.execute(
            "INSERT INTO credit_entries (user_id, delta, reason, balance_after, task_id, "
            "created_at) VALUES (?, 10, 'release', 1010, ?, ?)",
            [user, task, stamp(n)],
        )
        connection.execute("COMMIT")

    return answer


async def level(rows: int, rounds: int, runs: int) -> None:
    with migrated_database("") as settings, tempfile.TemporaryDirectory() as scratch:
        new_path = Path(settings.data_dir) / "sluice.sqlite3"
        users = fill(new_path, rows)
        old_path = Path(scratch) / "before.sqlite3"
        copy_without_indexes(new_path, old_path, INDEXES)  # as 0004 left them
        print(f"{rows:>7,} rows: plans old: {plans(old_path)}")
        print(f"{rows:>7,} rows: plans new: {plans(new_path)}")
        old, new = readers(old_path, users), readers(new_path, users)
        for n, name in enumerate(("reaper's queued tasks", "ledger page + count")):
            await old[n]()
            await new[n]()
            old_us, new_us = await us_per_call(old[n], new[n], rounds, runs)
            print(
                f"{rows:>7,} rows: {name:<22} {old_us:9.1f} -> {new_us:6.1f} us CPU "
                f"({new_us / old_us:.3f}x)"
            )
        old_write, new_write = writer(old_path, users, "o"), writer(new_path, users, "n")
        old_us, new_us = await us_per_call(old_write, new_write, rounds, runs)
        print(
            f"{rows:>7,} rows: {'an answer' + chr(39) + 's writes':<22} {old_us:9.1f} -> "
            f"{new_us:6.1f} us CPU ({new_us / old_us:.3f}x)"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--rows", default="3000,30000")
    args = parser.parse_args()
    for rows in (int(n) for n in args.rows.split(",")):
        await level(rows, args.rounds, args.runs)


if __name__ == "__main__":
    asyncio.run(main())
