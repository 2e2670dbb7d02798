"""Regenerate the schema migration from the models.

Before the first release the schema is one initial migration, rebuilt whole whenever
models change; after it, drop `--reset` and Tortoise appends a new migration.
Usage: python scripts/makemigrations.py [--reset]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "backend" / "migrations"


def main() -> None:
    if "--reset" in sys.argv:
        for path in MIGRATIONS.glob("0*.py"):
            path.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "migration_config.py"
        config.write_text(
            "from backend.database import tortoise_config\n"
            "from backend.settings import Settings\n"
            "TORTOISE_ORM = tortoise_config(\n"
            f"    Settings(data_dir={tmp!r}, database_url='', _env_file=None)\n"
            ")\n"
        )
        env_path = f"{tmp}:{ROOT}"
        subprocess.run(
            ["tortoise", "-c", "migration_config.TORTOISE_ORM", "makemigrations"],
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": env_path},
        )
    subprocess.run(["ruff", "format", "-q", str(MIGRATIONS)], check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
