"""Fixtures shared by every test directory: a local PostgreSQL per session for the PostgreSQL stores."""

from inhouse.testing.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]
