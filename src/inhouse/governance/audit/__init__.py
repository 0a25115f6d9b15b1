"""The tamper-evident audit log.

* ``chain.py``: the pure hash chain (record canonicalisation, hashing, ``check_chain``), what a third party
  re-implements to check an export;
* ``head.py``: the HMAC-signed head and its key;
* ``store.py``: the ``AuditStore`` protocol (SQLite: ``inhouse.store.sqlite.audit``; PostgreSQL:
  ``inhouse.store.postgres.audit``);
* ``log.py``: ``AuditLog``, the rules of appending, resealing and verifying, over a store;
* ``report.py``: the evidence report.
"""

from inhouse.governance.audit.chain import (
    FIELDS,
    GENESIS,
    RESEALED,
    AuditRecord,
    Head,
    VerifyReport,
    canonical_json,
    check_chain,
    format_ts,
    record_hash,
)
from inhouse.governance.audit.log import ENGINE_CRASHED, INTERRUPTED, MODEL_LOADED, STARTED, AuditLog, parse_since

__all__ = [
    "ENGINE_CRASHED", "FIELDS", "GENESIS", "INTERRUPTED", "MODEL_LOADED", "RESEALED", "STARTED", "AuditLog",
    "AuditRecord", "Head", "VerifyReport", "canonical_json", "check_chain", "format_ts", "parse_since", "record_hash",
]
