"""``SqliteResponseStore``: the ``ResponseStore`` of the embedded install (table ``responses`` of ``inhouse.db``);
a save and its cap run in one SQLite write transaction. A delete empties the WAL once it commits, so the response's
text is gone from the disk (``Database.purge_after_commit``)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from inhouse.store.responses import SqlResponseStore

if TYPE_CHECKING:
    from inhouse.types import Actor


class SqliteResponseStore(SqlResponseStore):
    placeholder = "?"

    def owner_transaction(self, owner: str) -> AbstractContextManager[Any]:
        return self._db.transaction()  # type: ignore[no-any-return]

    def delete(self, actor: Actor, response_id: str) -> None:
        with self._db.transaction():
            self._db.purge_after_commit()
            super().delete(actor, response_id)
