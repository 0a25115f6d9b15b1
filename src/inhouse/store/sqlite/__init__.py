"""The embedded stores: SQLite files in the data directory (``database.py`` is the one helper they share)."""
