"""What the URLs of the services Sluice uses name: STORAGE_URL (a local directory or an
S3 bucket and prefix) and ELASTICSEARCH_URL (one node or several).

Settings checks the values at start-up, and the storage and search layers connect with
them; the parsing lives here, below all three (settings must not import those layers).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit


def parse_storage_url(url: str, data_dir: Path) -> Path | tuple[str, str]:
    """A local directory, or (bucket, prefix); ValueError naming what is wrong."""
    if not url:
        return data_dir
    if url.startswith("file://"):
        path = url[len("file://") :]
        if not path:
            raise ValueError("STORAGE_URL file:// names no directory: e.g. file:///var/sluice")
        return Path(path)
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"STORAGE_URL {url!r} names no bucket: s3://bucket/prefix")
        return parts.netloc, parts.path.strip("/")
    raise ValueError(f"STORAGE_URL {url!r}: use file:///directory or s3://bucket/prefix")


def hosts_of(url: str) -> tuple[str, ...]:
    """The nodes of ELASTICSEARCH_URL: one URL, or several separated by commas."""
    hosts = tuple(part.strip() for part in url.split(",") if part.strip())
    if not hosts:
        raise ValueError("ELASTICSEARCH_URL names no node")
    for host in hosts:
        if not host.startswith(("http://", "https://")):
            raise ValueError(f"ELASTICSEARCH_URL: {host!r} should start with http:// or https://")
    return hosts
