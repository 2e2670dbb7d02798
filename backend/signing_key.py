"""The key that signs access tokens: `SECRET_KEY`, or one generated once per DATA_DIR.

No process may sign with a key anyone can read in the source. With `SECRET_KEY` unset
(the embedded defaults, `make run`), the first process to start writes 48 random bytes
to `DATA_DIR/secret_key` (mode 0600) and every process of that DATA_DIR reads the same
file. The file is written under a temporary name and hard-linked into place, which
fails if another process got there first: web and workers started together all end up
with the one key that won, never a half-written one. With several replicas each has its
own DATA_DIR, so `REPLICA_MODE` requires `SECRET_KEY` (backend/settings.py).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from backend.settings import PUBLIC_SECRET_KEY, SECRET_KEY_MIN_BYTES, Settings

KEY_FILE_NAME = "secret_key"
GENERATED_BYTES = 48

_loaded: dict[Path, str] = {}


class SigningKeyError(RuntimeError):
    """The key file exists but cannot be trusted; the message says what to do."""


def signing_key(settings: Settings) -> str:
    """The key tokens are signed and checked with (read once per process and DATA_DIR)."""
    if settings.secret_key:
        return settings.secret_key
    path = (settings.data_dir / KEY_FILE_NAME).resolve()
    key = _loaded.get(path)
    if key is None:
        key = _loaded[path] = read_or_create(path)
    return key


def read_or_create(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        create(path)
    return read(path)


def create(path: Path) -> None:
    """Write a new key under a private name, then link it into place unless one exists."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(GENERATED_BYTES) + "\n")
            file.flush()
            os.fsync(file.fileno())
        # Fails if another process of this DATA_DIR won: its key is the one.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def read(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SigningKeyError(
            f"{path} is readable by other users (mode {mode:o}): chmod 600 it, or delete it "
            "to generate a new key (which logs everybody out), or set SECRET_KEY"
        )
    key = path.read_text().strip()
    if len(key.encode()) < SECRET_KEY_MIN_BYTES or key == PUBLIC_SECRET_KEY:
        raise SigningKeyError(
            f"{path} holds no usable key (public, or under {SECRET_KEY_MIN_BYTES} bytes): "
            "delete it to generate a new one, or set SECRET_KEY"
        )
    return key
