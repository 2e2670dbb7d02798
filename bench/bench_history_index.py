"""A turn's history read (backend/models/lean_reads.history_page, the page `services.context`
reads for every answer) on a SQLite database without the messages index of migration 0004
next to the same database with it, alternating round by round in one process.

Each database holds `--sessions` sessions of `--per-session` messages (what a bench run
or a service leaves behind); a read is the product's own statement
(`history_page_sql("sqlite")`: a session's newest 64 messages) for a random session, on a
read-only connection of this thread as `backend.models.loop_reads` opens it. Without the
index SQLite scans every message and sorts the session's; with it, it walks the session's
entries in order. Prints CPU per read old and new and the ratio, at each table size.

Usage: python -m bench.bench_history_index [--rounds N] [--runs N] [--per-session N]
       [--sessions 50,500,5000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import tempfile
from pathlib import Path

from backend.models.lean_reads import history_page_sql
from bench.alternation import us_per_call
from bench.service import copy_without_indexes, migrated_database

HISTORY_PAGE = 64  # services.context.HISTORY_PAGE
INDEX_COLUMNS = '("session_id", "created_at", "id")'


def fill(path: Path, sessions: int, per_session: int) -> list[str]:
    """`sessions` x `per_session` messages, interleaved in time as concurrent chats write
    them; returns the session ids. Foreign keys are off on this connection: the rows the
    read touches are the messages alone."""
    ids = [f"s{n:031d}" for n in range(sessions)]
    db = sqlite3.connect(path)
    rows = (
        (
            f"m{turn:015d}{n:016d}",
            "user" if turn % 2 == 0 else "assistant",
            '[{"type": "text", "text": "a question of a few words, as chats have"}]',
            1,
            0,
            0,
            None,
            f"2026-12-06 10:{turn // 60 % 60:02d}:{turn % 60:02d}.{n:06d}+00:00",
            session,
            None,
        )
        for turn in range(per_session)
        for n, session in enumerate(ids)
    )
    db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    return ids


def reader(path: Path, sessions: list[str]):
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    statement = history_page_sql("sqlite")
    pick = random.Random(16).choice

    async def read() -> None:
        connection.execute(statement, [pick(sessions), HISTORY_PAGE, 0]).fetchall()

    return read


async def level(sessions: int, per_session: int, rounds: int, runs: int) -> None:
    with migrated_database("") as settings, tempfile.TemporaryDirectory() as scratch:
        new_path = Path(settings.data_dir) / "sluice.sqlite3"
        ids = fill(new_path, sessions, per_session)
        old_path = Path(scratch) / "before.sqlite3"
        copy_without_indexes(new_path, old_path, [("messages", INDEX_COLUMNS)])
        old, new = reader(old_path, ids), reader(new_path, ids)
        await old()
        await new()
        old_us, new_us = await us_per_call(old, new, rounds, runs)
        print(
            f"{sessions * per_session:>9,} messages ({sessions:>5} sessions): "
            f"history read {old_us:9.1f} -> {new_us:6.1f} us CPU ({new_us / old_us:.3f}x)"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--per-session", type=int, default=60)
    parser.add_argument("--sessions", default="50,500,5000")
    args = parser.parse_args()
    for sessions in (int(n) for n in args.sessions.split(",")):
        await level(sessions, args.per_session, args.rounds, args.runs)


if __name__ == "__main__":
    asyncio.run(main())
