"""The access rule of ``kb.access.may_see`` as SQLite SQL: which documents (and chunks) an ``AccessScope`` may read.

Every read of the store that returns content ANDs one of these subqueries in (the rule runs inside the query, so
a limit is filled from allowed rows only). A caller may see a document when they are an admin, or when a group or
key of theirs is on the collection's list, and on the document's own list if it has one, and either the
document's label is within their clearance or the document's own list names them.
"""

from __future__ import annotations

import json
from typing import Any

from inhouse.kb.access import AccessScope
from inhouse.kb.index.protocol import SearchFilters


def allowed_docs(scope: AccessScope, filters: SearchFilters, columns: str = "d.pk") -> tuple[str, dict[str, Any]]:
    """SQL selecting (``columns`` of) the documents ``scope`` may see (``kb.access.may_see``), ANDed with
    ``filters``; and its named parameters."""
    params: dict[str, Any] = {
        "admin": int(scope.is_admin), "key": scope.key_id, "groups": json.dumps(sorted(scope.groups)),
        "clear": scope.clearance.rank,
    }
    named = ("(a.kind = 'key' AND a.principal = :key) OR (a.kind = 'group' AND a.principal IN"
             " (SELECT value FROM json_each(:groups)))")
    doc_named = f"EXISTS (SELECT 1 FROM kb_acl a WHERE a.owner = d.id AND ({named}))"
    sql = (
        f"SELECT {columns} FROM kb_documents d JOIN kb_collections c ON c.pk = d.collection_pk"
        " WHERE (:admin = 1 OR ("
        f" EXISTS (SELECT 1 FROM kb_acl a WHERE a.owner = c.id AND ({named}))"
        f" AND (d.has_acl = 0 OR {doc_named})"
        f" AND (d.label_rank <= :clear OR (d.has_acl = 1 AND {doc_named}))))"
    )
    if filters.collection_ids is not None:
        params["cols"] = json.dumps(sorted(filters.collection_ids))
        sql += " AND c.id IN (SELECT value FROM json_each(:cols))"
    if filters.document_ids is not None:
        params["docs"] = json.dumps(sorted(filters.document_ids))
        sql += " AND d.id IN (SELECT value FROM json_each(:docs))"
    if filters.labels is not None:
        params["labels"] = json.dumps(sorted(label.rank for label in filters.labels))
        sql += " AND d.label_rank IN (SELECT value FROM json_each(:labels))"
    if filters.source_prefix:
        # Case-sensitive, as paths are (and as on PostgreSQL): SQLite's LIKE ignores the case of ASCII letters.
        params["prefix"] = filters.source_prefix
        sql += " AND substr(d.source_path, 1, length(:prefix)) = :prefix"
    return sql, params


def allowed_chunks(scope: AccessScope, filters: SearchFilters) -> tuple[str, dict[str, Any]]:
    """SQL selecting the ``pk`` of every chunk ``scope`` may see, ANDed with ``filters``."""
    docs, params = allowed_docs(scope, filters)
    return f"SELECT k.pk FROM kb_chunks k WHERE k.document_pk IN ({docs})", params
