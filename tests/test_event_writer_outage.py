"""EventWriter through a lost connection, against a real Redis: a pipeline cut mid-way
after Redis ran its first commands is finished without writing any event twice.

The cut is real: a proxy in front of the test Redis passes the first bytes of the
batch's pipeline, waits until Redis has answered the complete commands among them (so
they are applied, deterministically), and drops the client's connection; the writer
retries through the proxy, which passes everything again. A naive re-send of the batch
writes the landed appends twice (the failure this guards against).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from backend.streams.event_writer import EventWriter, StreamUnavailable
from backend.streams.landed import find_landed
from tests.support.live_server import free_port


class PipelineCutter:
    """A TCP forwarder to Redis; `cut_after(n)` drops the next request after n bytes."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.budget: int | None = None
        self.replies_before_cut = -1
        self.server: asyncio.Server | None = None
        self.db = 0

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    def cut_after(self, budget: int) -> None:
        self.budget = budget

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        back = asyncio.create_task(self.pipe(up_reader, writer))
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(1 << 20):
                if self.budget is not None and len(data) > self.budget:
                    await self.cut(data[: self.budget], back, up_reader, up_writer, writer)
                    return
                up_writer.write(data)
                await up_writer.drain()
        up_writer.close()

    async def cut(
        self,
        head: bytes,
        back: asyncio.Task[None],
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
    ) -> None:
        self.budget = None
        back.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await back
        up_writer.write(head)
        up_writer.write_eof()  # Redis runs the whole commands in `head`, answers, closes
        replies = await up_reader.read()
        self.replies_before_cut = replies.count(b"$")  # one bulk-string id per XADD
        client.transport.abort()

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(1 << 20):
                writer.write(data)
                await writer.drain()
        writer.close()


@pytest.fixture
async def cutter(redis: aioredis.Redis) -> AsyncIterator[PipelineCutter]:
    kwargs = redis.connection_pool.connection_kwargs
    proxy = PipelineCutter(kwargs.get("port", 6379))
    proxy.db = kwargs.get("db", 0)
    proxy.server = await asyncio.start_server(proxy.accept, "127.0.0.1", 0)
    yield proxy
    proxy.server.close()


def through(proxy: PipelineCutter) -> aioredis.Redis:
    return aioredis.Redis(host="127.0.0.1", port=proxy.port, db=proxy.db)


def token(stream: int, n: int) -> dict[str, str]:
    # The same delta every time: only the fence and the order tell the appends apart.
    return {"type": "token", "data": f'{{"delta": "s{stream} the"}}' if n % 2 else "{}"}


async def test_a_pipeline_cut_after_its_first_commands_is_finished_without_duplicates(
    redis: aioredis.Redis, cutter: PipelineCutter, caplog: pytest.LogCaptureFixture
) -> None:
    client = through(cutter)
    writer = EventWriter(client, outage_tolerance_seconds=10)
    keys = [f"ew-cut:{uuid.uuid4().hex}:{s}" for s in range(3)]
    fences = [
        await writer.append(key, {"type": "queued", "data": "{}"}, max_events=100)
        for key in keys  # also opens the client's connection before the cut is armed
    ]
    per_stream = 6
    cutter.cut_after(700)  # of about 1,900 bytes: the first few XADDs

    with caplog.at_level(logging.WARNING, "sluice.streams.writer"):
        returned = await asyncio.wait_for(
            asyncio.gather(
                *(
                    writer.append(key, token(s, n), max_events=100, after=fences[s].decode())
                    for n in range(per_stream)
                    for s, key in enumerate(keys)
                )
            ),
            timeout=10,
        )
    await client.aclose()

    assert 0 < cutter.replies_before_cut < len(keys) * per_stream, cutter.replies_before_cut
    for s, key in enumerate(keys):
        rows = await redis.xrange(key)
        assert [entry_id for entry_id, _ in rows] == [
            fences[s],
            *(returned[n * len(keys) + s] for n in range(per_stream)),
        ]
        got = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in rows[1:]]
        assert got == [token(s, n) for n in range(per_stream)]
    messages = [record.getMessage() for record in caplog.records]
    assert sum("is unreachable" in m for m in messages) == 1, messages
    assert sum("is back after" in m for m in messages) == 1, messages


async def test_find_landed_counts_the_batch_prefix_after_the_fence(redis: aioredis.Redis) -> None:
    """Appends identical to the entries before the fence are not taken as landed."""

    class Append:
        def __init__(self, key: str, fields: dict[str, str], after: str | None) -> None:
            self.key, self.fields, self.after = key, fields, after

    key = f"ew-landed:{uuid.uuid4().hex}"
    same = {"type": "token", "data": '{"delta": "the"}'}
    await redis.xadd(key, same)
    fence = (await redis.xadd(key, same)).decode()  # the id the last append returned
    batch = [Append(key, same, fence) for _ in range(4)]
    assert await find_landed(redis, batch) == {}  # nothing after the fence
    first = await redis.xadd(key, same)  # the first two landed
    second = await redis.xadd(key, same)
    assert await find_landed(redis, batch) == {0: first, 1: second}
    # Redis lost the stream (no persistence): nothing landed, all are sent again.
    await redis.delete(key)
    assert await find_landed(redis, batch) == {}


async def test_an_outage_longer_than_the_tolerance_fails_the_appends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = aioredis.Redis(port=free_port(), socket_connect_timeout=1)  # nothing listens
    writer = EventWriter(client, outage_tolerance_seconds=0.5)
    outcomes = await asyncio.wait_for(
        asyncio.gather(
            *(
                writer.append(f"ew-gone:{i}", {"type": "token", "data": "{}"}, max_events=10)
                for i in range(3)
            ),
            return_exceptions=True,
        ),
        timeout=10,
    )
    # Appends made after the tolerance ran out fail at once.
    started = asyncio.get_running_loop().time()
    with pytest.raises(StreamUnavailable):
        await writer.append("ew-gone:late", {"type": "token", "data": "{}"}, max_events=10)
    assert asyncio.get_running_loop().time() - started < 0.5
    await client.aclose()
    assert all(isinstance(outcome, StreamUnavailable) for outcome in outcomes), outcomes
    assert "more than 0.5 s" in str(outcomes[0])


def start_replica(port: int, directory: Path) -> subprocess.Popen:
    """A redis-server replicating a primary that is not there: read-only until promoted."""
    binary = shutil.which("redis-server")
    assert binary is not None
    flags = ["--bind", "127.0.0.1", "--dir", str(directory), "--save", ""]
    primary = ["--replicaof", "127.0.0.1", str(free_port())]
    return subprocess.Popen(
        [binary, "--port", str(port), *flags, *primary], stdout=subprocess.DEVNULL
    )


async def test_a_read_only_replica_is_waited_out_until_it_is_promoted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A failover's first moments: the address answers, but as a replica (READONLY)."""
    port = free_port()
    replica = start_replica(port, tmp_path)
    client = aioredis.Redis(port=port)
    try:
        for _ in range(100):
            with contextlib.suppress(aioredis.ConnectionError):
                await client.ping()
                break
            await asyncio.sleep(0.1)
        writer = EventWriter(client, outage_tolerance_seconds=30)
        fields = {"type": "token", "data": "{}"}
        with caplog.at_level(logging.WARNING, "sluice.streams.writer"):
            appending = asyncio.create_task(writer.append("ew-ro", fields, max_events=10))
            for _ in range(100):
                if "ReadOnlyError" in caplog.text:
                    break
                await asyncio.sleep(0.05)
            assert "is unreachable (ReadOnlyError" in caplog.text, caplog.text
            assert not appending.done()
            await client.execute_command("REPLICAOF", "NO", "ONE")
            entry_id = await asyncio.wait_for(appending, timeout=10)
        assert await client.xrange("ew-ro") == [(entry_id, {b"type": b"token", b"data": b"{}"})]
    finally:
        await client.aclose()
        replica.kill()
        replica.wait(10)


async def test_a_bad_append_in_a_cut_batch_still_fails_alone(
    redis: aioredis.Redis, cutter: PipelineCutter
) -> None:
    client = through(cutter)
    writer = EventWriter(client, outage_tolerance_seconds=10)
    good, bad = f"ew-cut:{uuid.uuid4().hex}:good", f"ew-cut:{uuid.uuid4().hex}:bad"
    fence = (await writer.append(good, {"type": "queued", "data": "{}"}, max_events=100)).decode()
    await redis.set(bad, "x")
    cutter.cut_after(300)  # of about 650 bytes

    outcomes = await asyncio.wait_for(
        asyncio.gather(
            *(writer.append(good, token(0, n), max_events=100, after=fence) for n in range(2)),
            writer.append(bad, token(1, 0), max_events=100),
            *(writer.append(good, token(0, n), max_events=100, after=fence) for n in (2, 3)),
            return_exceptions=True,
        ),
        timeout=10,
    )
    await client.aclose()

    assert cutter.replies_before_cut > 0
    assert isinstance(outcomes[2], ResponseError), outcomes
    rows = await redis.xrange(good)
    assert [entry_id for entry_id, _ in rows[1:]] == [outcomes[i] for i in (0, 1, 3, 4)]
    assert [{k.decode(): v.decode() for k, v in f.items()} for _, f in rows[1:]] == [
        token(0, n) for n in range(4)
    ]
    assert await redis.get(bad) == b"x"
