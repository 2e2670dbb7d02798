"""How soon an open WebSocket closes when its API key is deleted (issue 19, item 2).

One web process on a private Redis (bench/service.py). Each round opens `/api/v1/ws`
with a fresh API key, sends `DELETE /api/v1/users/me/api-keys/{id}`, and times from
sending the DELETE to the socket's close (4401): the DELETE's own round trip, the
Redis announcement and the close. The DELETE alone is timed too, as the floor, and
the ratio printed. Usage: python -m bench.bench_revocation [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import httpx
import websockets

from bench.service import web_service

PASSWORD = "bench-password-1"
KEYS = "/api/v1/users/me/api-keys"


async def measure(base_url: str, port: int, rounds: int) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        username = f"bench{uuid.uuid4().hex[:8]}"
        await http.post("/api/v1/users", json={"username": username, "password": PASSWORD})
        login = await http.post(
            "/api/v1/session/oauth2/token", data={"username": username, "password": PASSWORD}
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        deletes, closes = [], []
        for _ in range(rounds):
            key = (await http.post(KEYS, json={"name": "b"}, headers=headers)).json()["data"]
            url = f"ws://127.0.0.1:{port}/api/v1/ws?access_token={key['key']}"
            async with websockets.connect(url) as ws:
                await ws.recv()  # ready
                started = time.perf_counter()
                deleting = asyncio.create_task(http.delete(f"{KEYS}/{key['id']}", headers=headers))
                try:
                    while True:
                        await asyncio.wait_for(ws.recv(), 10)
                except websockets.ConnectionClosed as closed:
                    assert closed.rcvd is not None and closed.rcvd.code == 4401
                closes.append((time.perf_counter() - started) * 1000)
                deleted = await deleting
                assert deleted.status_code == 200
                deletes.append(deleted.elapsed.total_seconds() * 1000)
    floor, close = statistics.median(deletes), statistics.median(closes)
    print(f"{rounds} rounds (medians, ms)")
    print(f"DELETE answered (floor)         {floor:7.1f}")
    worst = max(closes)
    print(f"socket closed 4401 after DELETE {close:7.1f}  max {worst:7.1f}  ({close / floor:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with web_service() as service:
        asyncio.run(measure(service.base_url, service.port, args.rounds))


if __name__ == "__main__":
    main()
