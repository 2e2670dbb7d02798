"""Which browser pages may open the WebSocket (`CORS_ORIGINS`).

`Origin` is a browser's header. Native apps, WeChat mini-programs and servers send none,
and their token, not an origin, is what authenticates them: no Origin, no check. A
browser page is accepted from the server's own origin (its host and port are the `Host`
the request came to) or from a listed origin; any other page is refused. With no
`CORS_ORIGINS` configured nothing is checked, as for the HTTP routes, which then send
no CORS headers at all.
"""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def browser_origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    if not allowed or not origin:
        return True
    if "*" in allowed or origin in allowed:
        return True
    return host is not None and same_authority(origin, host)


def same_authority(origin: str, host: str) -> bool:
    """Whether the page at `origin` was served from `host` (the request's Host header)."""
    page = urlsplit(origin)
    served = urlsplit(f"//{host}")
    default_port = DEFAULT_PORTS.get(page.scheme)
    try:
        page_port, served_port = page.port or default_port, served.port or default_port
    except ValueError:
        return False
    return bool(page.hostname) and (page.hostname, page_port) == (served.hostname, served_port)
