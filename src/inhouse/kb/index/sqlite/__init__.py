"""The embedded index (``kb.db``): ``store.py`` (``SqliteIndexStore``), ``schema.py`` (tables and migrations),
``access.py`` (the access rule as SQL)."""

from inhouse.kb.index.sqlite.store import SqliteIndexStore

__all__ = ["SqliteIndexStore"]
