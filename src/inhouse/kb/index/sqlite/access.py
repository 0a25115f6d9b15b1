"""The access rule of ``kb.access.may_see`` as SQLite SQL: which documents (and chunks) an ``AccessScope`` may read.

Every read of the store that returns content ANDs one of these in (the rule runs inside the query, so a limit is
filled from allowed rows only). For a member the rule reads: the document's collection lists a group or key of
theirs, and either the document has no list of its own and its label is within their clearance, or its own list
names them (then any label: need-to-know). That is ``may_see`` with its cases taken apart; the hypothesis tests of
``tests/unit/kb/test_access_sql.py`` hold both forms below to it.

Two forms, for two uses:

* ``allowed_docs`` lists the allowed documents (a search's allowed set, a member's page of a collection). It starts
  from what names the caller: the collections whose list does (checked once each, not once per document), then the
  documents without a list of their own in those collections within the clearance (index ``kb_documents_access``),
  and the documents whose own list names the caller (index ``kb_acl_principal``). Its cost follows the number of
  documents the caller may see; the full scan of ``kb_documents`` it replaces, with two correlated lookups per
  document, cost ~0.6 µs of CPU per document of the index (30 ms at 50k documents for a member who saw 500, now
  0.5 ms).
* ``document_condition`` tests given documents (a few chunks by id, one document): per row, one lookup of the
  document's own list at most.
"""

from __future__ import annotations

import json
from typing import Any

from inhouse.kb.access import AccessScope
from inhouse.kb.index.protocol import SearchFilters

_NAMED = ("((a.kind = 'key' AND a.principal = :key) OR (a.kind = 'group' AND a.principal IN"
          " (SELECT value FROM json_each(:groups))))")
# The collections whose own list names the caller: an uncorrelated subquery, evaluated once per statement.
_COLLECTIONS = ("SELECT c.pk FROM kb_collections c WHERE EXISTS"
                f" (SELECT 1 FROM kb_acl a WHERE a.owner = c.id AND {_NAMED})")
_FROM = " FROM kb_documents d JOIN kb_collections c ON c.pk = d.collection_pk"


def _filters(filters: SearchFilters) -> tuple[list[str], dict[str, Any]]:
    conds: list[str] = []
    params: dict[str, Any] = {}
    if filters.collection_ids is not None:
        params["cols"] = json.dumps(sorted(filters.collection_ids))
        conds.append("c.id IN (SELECT value FROM json_each(:cols))")
    if filters.document_ids is not None:
        params["docs"] = json.dumps(sorted(filters.document_ids))
        conds.append("d.id IN (SELECT value FROM json_each(:docs))")
    if filters.labels is not None:
        params["labels"] = json.dumps(sorted(label.rank for label in filters.labels))
        conds.append("d.label_rank IN (SELECT value FROM json_each(:labels))")
    if filters.source_prefix:
        # Case-sensitive, as paths are (and as on PostgreSQL): SQLite's LIKE ignores the case of ASCII letters.
        params["prefix"] = filters.source_prefix
        conds.append("substr(d.source_path, 1, length(:prefix)) = :prefix")
    return conds, params


def _scope_params(scope: AccessScope) -> dict[str, Any]:
    return {"key": scope.key_id, "groups": json.dumps(sorted(scope.groups)), "clear": scope.clearance.rank}


def allowed_docs(scope: AccessScope, filters: SearchFilters, columns: str = "d.pk") -> tuple[str, dict[str, Any]]:
    """SQL selecting (``columns`` of ``kb_documents d`` and ``kb_collections c``) the documents ``scope`` may see
    (``kb.access.may_see``), ANDed with ``filters``, each once; and its named parameters. For a member it is a
    ``UNION ALL`` of two selects: wrap it to group or order the rows."""
    conds, params = _filters(filters)
    if scope.is_admin:
        return f"SELECT {columns}{_FROM} WHERE {' AND '.join(conds) or '1'}", params
    params.update(_scope_params(scope))
    # No list of its own: the collection's list and the label decide.
    unlisted = [f"d.collection_pk IN ({_COLLECTIONS})", "d.has_acl = 0", "d.label_rank <= :clear", *conds]
    # A list of its own that names the caller (``IN`` reads each such document once, however many entries name
    # the caller): any label, within a collection whose list names them too.
    listed = [f"d.collection_pk IN ({_COLLECTIONS})", "d.has_acl = 1",
              f"d.id IN (SELECT a.owner FROM kb_acl a WHERE {_NAMED})", *conds]
    return (f"SELECT {columns}{_FROM} WHERE {' AND '.join(unlisted)}"
            f" UNION ALL SELECT {columns}{_FROM} WHERE {' AND '.join(listed)}"), params


def collection_documents(scope: AccessScope) -> tuple[str, dict[str, Any]]:
    """SQL selecting the documents of the collections whose list names ``scope`` (every document for an admin): what
    it may see at most, read from an index range per collection, so a ``LIMIT`` bounds its cost."""
    if scope.is_admin:
        return "SELECT d.pk FROM kb_documents d", {}
    return f"SELECT d.pk FROM kb_documents d WHERE d.collection_pk IN ({_COLLECTIONS})", _scope_params(scope)


def document_condition(scope: AccessScope, filters: SearchFilters) -> tuple[str, dict[str, Any]]:
    """A condition on a document ``d`` of collection ``c``: ``scope`` may see it and it passes ``filters``; its
    parameters. For reads of a few known rows."""
    conds, params = _filters(filters)
    if not scope.is_admin:
        params.update(_scope_params(scope))
        conds.insert(0, f"d.collection_pk IN ({_COLLECTIONS}) AND ((d.has_acl = 0 AND d.label_rank <= :clear) OR"
                        f" (d.has_acl = 1 AND EXISTS (SELECT 1 FROM kb_acl a WHERE a.owner = d.id AND {_NAMED})))")
    return f"({' AND '.join(conds) or '1'})", params


def allowed_chunks(scope: AccessScope, filters: SearchFilters) -> tuple[str, dict[str, Any]]:
    """SQL selecting the ``pk`` of every chunk ``scope`` may see, ANDed with ``filters``."""
    docs, params = allowed_docs(scope, filters)
    return f"SELECT k.pk FROM kb_chunks k WHERE k.document_pk IN ({docs})", params
