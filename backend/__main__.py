"""Operator commands: `python -m backend web | migrate | create-admin | reindex --to elasticsearch |
storage copy --to s3://bucket/prefix`."""

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
from backend.signing_key import SigningKeyError, signing_key


async def run_migrate() -> None:
    settings = get_settings()
    await migrate_database(settings)
    print("database migrated")
    try:
        # `make run` migrates first: the processes it starts then find the key made.
        signing_key(settings)
    except SigningKeyError as error:
        raise SystemExit(str(error)) from None


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


async def run_reindex(concurrency: int) -> None:
    """Copy the embedded store's chunks to the Elasticsearch at ELASTICSEARCH_URL (see
    backend/search/reindex.py); the embedded store is left as it was."""
    from backend.search.elasticsearch_client import ElasticsearchConnection
    from backend.search.elasticsearch_store import ElasticsearchSearchStore
    from backend.search.embedded import EmbeddedSearchStore
    from backend.search.reindex import reindex

    settings = get_settings()
    if not settings.search_db_file.exists():
        raise SystemExit(f"no embedded search store at {settings.search_db_file}: nothing to move")
    source = EmbeddedSearchStore(settings.search_db_file)
    target = ElasticsearchSearchStore(
        ElasticsearchConnection.from_settings(settings),
        prefix=settings.elasticsearch_index_prefix,
    )

    def progress(done: int, total: int, chunks: int) -> None:
        if done == total or done % 100 == 0:
            print(f"  {done}/{total} documents, {chunks} chunks", flush=True)

    try:
        print(
            f"reindexing {settings.search_db_file} into {settings.elasticsearch_url} "
            f"(indices {settings.elasticsearch_index_prefix}-*)",
            flush=True,
        )
        report = await reindex(source, target, concurrency=concurrency, progress=progress)
    finally:
        await source.close()
        await target.close()
    print(report.summary())
    print("now set SEARCH_STORE=elasticsearch and restart the web process and the workers")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m backend")
    commands = parser.add_subparsers(dest="command", required=True)
    web = commands.add_parser("web", help="serve the API (drains open streams on SIGTERM)")
    web.add_argument("--bind", help="HOST:PORT (default 0.0.0.0:$PORT)")
    web.add_argument("--workers", type=int, help="serving processes (default $WEB_CONCURRENCY)")
    commands.add_parser("migrate", help="apply schema migrations")
    admin = commands.add_parser("create-admin", help="create an administrator account")
    admin.add_argument("--username", default=os.environ.get("ADMIN_USERNAME") or None)
    admin.add_argument("--password", default=os.environ.get("ADMIN_PASSWORD") or None)
    move = commands.add_parser(
        "reindex", help="copy the embedded store's chunks to Elasticsearch (re-runnable)"
    )
    move.add_argument("--to", choices=["elasticsearch"], required=True)
    move.add_argument("--concurrency", type=int, default=4, help="documents moved at once")
    storage = commands.add_parser("storage", help="file storage commands")
    storage_commands = storage.add_subparsers(dest="storage_command", required=True)
    copy = storage_commands.add_parser(
        "copy", help="copy every stored file to another storage (re-runnable)"
    )
    copy.add_argument("--to", required=True, help="s3://bucket/prefix or file:///directory")
    copy.add_argument("--from", dest="source", help="default: STORAGE_URL (or DATA_DIR)")
    args = parser.parse_args()
    if args.command == "web":
        from backend.web_server import run

        raise SystemExit(run(args.bind, args.workers))
    if args.command == "migrate":
        asyncio.run(run_migrate())
    elif args.command == "reindex":
        asyncio.run(run_reindex(args.concurrency))
    elif args.command == "storage":
        from backend.storage.copy import run_copy_command

        raise SystemExit(asyncio.run(run_copy_command(get_settings(), args.to, args.source)))
    else:
        username = args.username or input("username: ")
        password = args.password or getpass.getpass("password: ")
        asyncio.run(run_create_admin(username, password))


if __name__ == "__main__":
    main()
