"""Operator commands: `python -m backend migrate | create-admin`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os

from backend.database import close_database, migrate_database, open_database
from backend.errors import Conflict
from backend.models.users import Level
from backend.services.users import create_user
from backend.settings import get_settings


async def run_migrate() -> None:
    await migrate_database(get_settings())
    print("database migrated")


async def run_create_admin(username: str, password: str) -> None:
    settings = get_settings()
    await migrate_database(settings)
    await open_database(settings)
    try:
        await create_user(settings, username, password, level=Level.ADMIN)
        print(f"admin '{username}' created")
    except Conflict as exc:
        raise SystemExit(exc.message) from exc
    finally:
        await close_database()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m backend")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply schema migrations")
    admin = commands.add_parser("create-admin", help="create an administrator account")
    admin.add_argument("--username", default=os.environ.get("ADMIN_USERNAME") or None)
    admin.add_argument("--password", default=os.environ.get("ADMIN_PASSWORD") or None)
    args = parser.parse_args()
    if args.command == "migrate":
        asyncio.run(run_migrate())
    else:
        username = args.username or input("username: ")
        password = args.password or getpass.getpass("password: ")
        asyncio.run(run_create_admin(username, password))


if __name__ == "__main__":
    main()
