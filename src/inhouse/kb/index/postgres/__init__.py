"""The shared index on PostgreSQL: ``store.py`` (``PostgresIndexStore``), ``schema.py`` (tables and migrations),
``access.py`` (the access rule as SQL). pgvector HNSW for vectors, a ``tsvector`` of ``kb.index.keywords`` terms for
keywords."""

from inhouse.kb.index.postgres.store import PostgresIndexStore

__all__ = ["PostgresIndexStore"]
