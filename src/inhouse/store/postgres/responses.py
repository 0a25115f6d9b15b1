"""``PostgresResponseStore``: the ``ResponseStore`` shared by several inhouse nodes (table ``responses``). A save
inserts and drops the owner's oldest beyond the cap under an advisory lock of that owner, so saves of one owner on
two nodes cannot both keep one too many or drop a newer one."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from inhouse.store.postgres.database import lock_id
from inhouse.store.responses import SqlResponseStore


class PostgresResponseStore(SqlResponseStore):
    placeholder = "%s"

    def owner_transaction(self, owner: str) -> AbstractContextManager[Any]:
        return self._db.transaction(lock=lock_id(f"responses:{owner}"))  # type: ignore[no-any-return]
