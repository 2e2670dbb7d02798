"""The faults of bench_chaos: Redis killed and started again on its port, or PostgreSQL
stopped (fast shutdown) and started, at random, each down for 0.5-3 s; after each, how long
until the web process's `/readyz` answers 200 again."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import httpx

from tests.support.private_postgres import PrivatePostgres
from tests.support.private_redis import PrivateRedis


@dataclass
class Fault:
    kind: str
    back_at: float = 0.0
    ready_after: float | None = None
    answer_after: float | None = None


@dataclass
class Chaos:
    postgres: PrivatePostgres
    redis: PrivateRedis
    base_url: str
    faults: list[Fault] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)  # when each answer ended (monotonic)

    async def inject(self, rng: random.Random, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(rng.uniform(1, 4))
            if stop.is_set():
                return
            fault = Fault(rng.choice(["redis restart", "postgresql restart"]))
            down = rng.uniform(0.5, 3)
            if fault.kind == "redis restart":
                self.redis.kill()
                await asyncio.sleep(down)
                await self.redis.start()
            else:
                await asyncio.to_thread(self.postgres.stop, "fast")
                await asyncio.sleep(down)
                await asyncio.to_thread(self.postgres.start)
            fault.back_at = time.monotonic()
            self.faults.append(fault)
            await self.measure_ready(fault)

    async def measure_ready(self, fault: Fault) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as client:
            while time.monotonic() - fault.back_at < 60:
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        fault.ready_after = time.monotonic() - fault.back_at
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
