"""``SqliteResponseStore``: the ``ResponseStore`` of the embedded install (table ``responses`` of ``inhouse.db``);
a save and its cap run in one SQLite write transaction. A delete empties the WAL once it commits, so the response's
text is gone from the disk (``Database.erase``)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from inhouse.store.responses import SqlResponseStore


class SqliteResponseStore(SqlResponseStore):
    placeholder = "?"

    def owner_transaction(self, owner: str) -> AbstractContextManager[Any]:
        return self._db.transaction()  # type: ignore[no-any-return]
