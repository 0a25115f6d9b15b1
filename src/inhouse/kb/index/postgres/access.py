"""The access rule of ``kb.access.may_see`` as PostgreSQL SQL: the documents an ``AccessScope`` may read, as a
subquery the store turns into ``document_pk = ANY(ARRAY(…))`` inside each search (one statement: the rule and the
ranking run together, so a limit is filled from allowed rows only). Principals travel as ``text[]`` and labels as
``int[]``, cast explicitly (``%(groups)s::text[]``): psycopg cannot tell an empty list's element type.

The rule and its two forms are those of ``kb/index/sqlite/access.py``: ``allowed_docs`` lists the allowed documents
starting from what names the caller (indexes ``kb_documents_access`` and ``kb_acl_principal``), so its cost follows
the documents the caller may see, not those of the collection; ``document_condition`` tests given rows."""

from __future__ import annotations

from typing import Any

from inhouse.kb.access import AccessScope
from inhouse.kb.index.keywords import like_escape
from inhouse.kb.index.protocol import SearchFilters

_NAMED = ("((a.kind = 'key' AND a.principal = %(key)s) OR"
          " (a.kind = 'group' AND a.principal = ANY(%(groups)s::text[])))")
# The collections whose own list names the caller: uncorrelated, evaluated once per statement.
_COLLECTIONS = ("SELECT c.pk FROM kb_collections c WHERE EXISTS"
                f" (SELECT 1 FROM kb_acl a WHERE a.owner = c.id AND {_NAMED})")
_FROM = " FROM kb_documents d JOIN kb_collections c ON c.pk = d.collection_pk"


def _filters(filters: SearchFilters) -> tuple[list[str], dict[str, Any]]:
    conds: list[str] = []
    params: dict[str, Any] = {}
    if filters.collection_ids is not None:
        params["cols"] = sorted(filters.collection_ids)
        conds.append("c.id = ANY(%(cols)s::text[])")
    if filters.document_ids is not None:
        params["docs"] = sorted(filters.document_ids)
        conds.append("d.id = ANY(%(docs)s::text[])")
    if filters.labels is not None:
        params["labels"] = sorted(label.rank for label in filters.labels)
        conds.append("d.label_rank = ANY(%(labels)s::int[])")
    if filters.source_prefix:
        params["prefix"] = like_escape(filters.source_prefix) + "%"
        conds.append("d.source_path LIKE %(prefix)s ESCAPE '\\'")
    return conds, params


def _scope_params(scope: AccessScope) -> dict[str, Any]:
    return {"key": scope.key_id, "groups": sorted(scope.groups), "clear": scope.clearance.rank}


def document_condition(scope: AccessScope, filters: SearchFilters) -> tuple[str, dict[str, Any]]:
    """A condition on a document ``d`` of collection ``c``: ``scope`` may see it, and it passes ``filters``; its
    parameters. Evaluated per row, for reads of a few known chunks (``get_chunks``)."""
    conds, params = _filters(filters)
    if not scope.is_admin:
        params.update(_scope_params(scope))
        conds.insert(0, f"d.collection_pk IN ({_COLLECTIONS}) AND ((NOT d.has_acl AND d.label_rank <= %(clear)s) OR"
                        f" (d.has_acl AND EXISTS (SELECT 1 FROM kb_acl a WHERE a.owner = d.id AND {_NAMED})))")
    return f"({' AND '.join(conds) or 'true'})", params


def allowed_docs(scope: AccessScope, filters: SearchFilters, columns: str = "d.pk") -> tuple[str, dict[str, Any]]:
    """SQL selecting (``columns`` of ``kb_documents d`` and ``kb_collections c``) the documents ``scope`` may see,
    ANDed with ``filters``, each once; its parameters. For a member it is a ``UNION ALL`` of two selects (no list of
    its own: the collection's list and the label decide; an own list naming the caller: any label): wrap it to group
    or order the rows."""
    conds, params = _filters(filters)
    if scope.is_admin:
        return f"SELECT {columns}{_FROM} WHERE {' AND '.join(conds) or 'true'}", params
    params.update(_scope_params(scope))
    unlisted = [f"d.collection_pk IN ({_COLLECTIONS})", "NOT d.has_acl", "d.label_rank <= %(clear)s", *conds]
    listed = [f"d.collection_pk IN ({_COLLECTIONS})", "d.has_acl",
              f"d.id IN (SELECT a.owner FROM kb_acl a WHERE {_NAMED})", *conds]
    return (f"SELECT {columns}{_FROM} WHERE {' AND '.join(unlisted)}"
            f" UNION ALL SELECT {columns}{_FROM} WHERE {' AND '.join(listed)}"), params


def chunk_filter(scope: AccessScope, filters: SearchFilters, *, by_document_index: bool = True,
                 ) -> tuple[str, dict[str, Any]]:
    """A condition on ``kb_chunks k``: its document is one ``scope`` may see. ``by_document_index=False`` hides the
    condition from the btree on ``document_pk`` (``+ 0``): the planner cannot know how many documents the array
    holds, guesses few, and would fetch every allowed chunk: sorting them all by distance instead of walking the
    HNSW index (15 ms instead of 2.7 ms at 10k chunks), or testing each against the keywords instead of asking the
    GIN index for the matches."""
    docs, params = allowed_docs(scope, filters)
    column = "k.document_pk" if by_document_index else "(k.document_pk + 0)"
    return f"{column} = ANY(ARRAY({docs}))", params
