"""ASGI entry point for Hypercorn: `hypercorn backend.asgi:app`."""

from backend.app import create_app

app = create_app()
