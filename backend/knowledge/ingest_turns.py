"""Fair turns at an ingest worker's shared resources: parse children and embedding batches.

An ingest worker runs several documents at once (INGEST_WORKER_MAX_JOBS), but the CPU
they need is shared: parse children (INGEST_PARSE_SLOTS at a time) and the embedding
model (one batch at a time for the local model). Served in arrival order, one user's two
large files held everything: another user's 14-byte document waited 66 s, and a 1-chunk
document 14-19 s behind others' embedding batches. So each resource is taken in turns:

- **round-robin by user, then by document**: the next turn goes to the next user (in
  rotation) who is waiting, and within that user to their next document, so a user with
  ten documents gets no more than a user with one, and every document of a user moves;
- **a cap per user** (`per_user`): parse slots are capped at all but one when there are
  several, so one user's large files never hold every parser.

A turn is short by construction: an embedding batch is sized to about
EMBEDDING_BATCH_SECONDS (`batch_pace.py`), a parse is bounded by its size-proportional
budget. A small document therefore waits for at most one batch of each other document
ahead of it, not for whole documents. One event loop (the worker's) owns each instance.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from backend.knowledge.batch_pace import BatchPace
from backend.settings import Settings


class FairTurns:
    def __init__(self, slots: int, per_user: int | None = None) -> None:
        self.slots = max(1, slots)
        self.per_user = max(1, per_user or self.slots)
        self.busy = 0
        self.held: Counter[int] = Counter()
        # user -> document -> its waiters, documents in rotation order (dicts keep order).
        self.queues: dict[int, dict[str, deque[asyncio.Future[None]]]] = {}
        self.users: deque[int] = deque()

    def waiting(self) -> int:
        """Turns asked for and not yet given."""
        return sum(len(w) for documents in self.queues.values() for w in documents.values())

    def next_waiter(self) -> tuple[int, asyncio.Future[None]] | None:
        """The next turn: the first user in rotation under their cap, their first
        document; both go to the back of their rotation."""
        for _ in range(len(self.users)):
            user = self.users.popleft()
            documents = self.queues.get(user)
            if not documents:
                self.queues.pop(user, None)
                continue
            self.users.append(user)
            if self.held[user] >= self.per_user:
                continue
            document = next(iter(documents))
            waiters = documents.pop(document)
            future = waiters.popleft()
            if waiters:
                documents[document] = waiters
            if not documents:
                del self.queues[user]
                self.users.remove(user)
            return user, future
        return None

    def dispatch(self) -> None:
        while self.busy < self.slots and (picked := self.next_waiter()) is not None:
            user, future = picked
            if future.done():  # its waiter gave up meanwhile
                continue
            self.busy += 1
            self.held[user] += 1
            future.set_result(None)

    def release(self, user: int) -> None:
        self.busy -= 1
        self.held[user] -= 1
        if self.held[user] <= 0:
            del self.held[user]
        self.dispatch()

    def forget(self, user: int, document: str, future: asyncio.Future[None]) -> None:
        """A waiter that gave up leaves its place."""
        documents = self.queues.get(user, {})
        waiters = documents.get(document)
        if waiters is not None and future in waiters:
            waiters.remove(future)
            if not waiters:
                del documents[document]
        if not documents and user in self.queues:
            del self.queues[user]
            self.users.remove(user)

    @asynccontextmanager
    async def turn(self, user: int, document: str) -> AsyncIterator[None]:
        """Hold one slot for `document` of `user`, when its turn comes."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        documents = self.queues.setdefault(user, {})
        if user not in self.users:
            self.users.append(user)
        documents.setdefault(document, deque()).append(future)
        self.dispatch()
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self.release(user)  # granted just as it was cancelled
            else:
                future.cancel()
                self.forget(user, document, future)
            raise
        try:
            yield
        finally:
            self.release(user)


class IngestTurns:
    """One worker process's turns: its parse slots, and per embedding model a line of
    batches and their measured pace."""

    def __init__(self, settings: Settings) -> None:
        slots = settings.ingest_parse_slots
        self.parsing = FairTurns(slots, per_user=max(1, slots - 1))
        self.settings = settings
        self.embedding: dict[str, FairTurns] = {}
        self.paces: dict[str, BatchPace] = {}

    def embedding_line(self, model_id: str, parallel_batches: int | None) -> FairTurns:
        """The line of `model_id`: as many batches at once as its provider runs well
        (the local model one; a remote one INGEST_EMBEDDING_SLOTS)."""
        if model_id not in self.embedding:
            slots = parallel_batches or self.settings.ingest_embedding_slots
            self.embedding[model_id] = FairTurns(slots)
        return self.embedding[model_id]

    def pace(self, model_id: str) -> BatchPace:
        if model_id not in self.paces:
            self.paces[model_id] = BatchPace(
                self.settings.embedding_batch_seconds, self.settings.embedding_batch_size
            )
        return self.paces[model_id]
