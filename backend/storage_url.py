"""What STORAGE_URL names: a local directory or an S3 bucket and prefix.

Settings checks the value at start-up and `backend/storage/configured.py` builds the
storage from it; the parsing lives here, below both (settings must not import the
storage layer).
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
