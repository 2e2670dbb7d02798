"""A fake WeChat API speaking the code2session contract, on a free local port.

`GET /sns/jscode2session?appid&secret&js_code&grant_type=authorization_code` answers
`{"openid", "session_key", "unionid"}` or `{"errcode", "errmsg"}` like WeChat does
(always HTTP 200, labelled text/plain). The js_code scripts the answer:

- `ok-<openid>`: success for that openid (with a unionid `un-<openid>`)
- `invalid`: 40029, `used`: 40163, `ratelimit`: 45011, `risky`: 40226, `busy`: -1
- `partial`: an openid without session_key, `garbage`: a non-JSON body,
  `down`: HTTP 500 with an HTML page, `slow`: no answer for 5 s
Wrong appid or secret gives 40013, as WeChat does.

In tests: `async with fake_wechat_server("appid", "secret") as fake: fake.base_url`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

ERRORS = {
    "invalid": (40029, "invalid code"),
    "used": (40163, "code been used"),
    "ratelimit": (45011, "api minute-quota reach limit  mustslower  retry next minute"),
    "risky": (40226, "high risk user"),
    "busy": (-1, "system error"),
}
SLOW_SECONDS = 5.0


@dataclass
class FakeWechat:
    appid: str
    secret: str
    port: int = 0
    queries: list[dict[str, str]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, str, bytes]:
        """Status, content type and body for one request."""
        if path != "/sns/jscode2session":
            return 404, "text/html", b"<h1>404</h1>"
        if (query.get("appid"), query.get("secret")) != (self.appid, self.secret):
            return self.json({"errcode": 40013, "errmsg": "invalid appid"})
        if query.get("grant_type") != "authorization_code":
            return self.json({"errcode": 40002, "errmsg": "invalid grant_type"})
        code = query.get("js_code", "")
        if code.startswith("ok-"):
            openid = code.removeprefix("ok-")
            return self.json(
                {"openid": openid, "session_key": f"sk-{openid}-secret", "unionid": f"un-{openid}"}
            )
        if code == "partial":
            return self.json({"openid": "o-without-session-key"})
        if code == "garbage":
            return 200, "text/plain", b"<html>gateway hiccup</html>"
        if code == "down":
            return 500, "text/html", b"<h1>500 Internal Server Error</h1>"
        errcode, errmsg = ERRORS.get(code, ERRORS["invalid"])
        return self.json({"errcode": errcode, "errmsg": errmsg})

    @staticmethod
    def json(payload: dict) -> tuple[int, str, bytes]:
        return 200, "text/plain", json.dumps(payload).encode()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            _, target, _ = head.decode("latin-1").split("\r\n", 1)[0].split(" ", 2)
            url = urlsplit(target)
            query = {name: values[0] for name, values in parse_qs(url.query).items()}
            self.queries.append(query)
            if query.get("js_code") == "slow":
                await asyncio.sleep(SLOW_SECONDS)
            status, content_type, body = self.answer(url.path, query)
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def fake_wechat_server(appid: str, secret: str) -> AsyncIterator[FakeWechat]:
    fake = FakeWechat(appid, secret)
    server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
    fake.port = server.sockets[0].getsockname()[1]
    try:
        yield fake
    finally:
        server.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 1)
