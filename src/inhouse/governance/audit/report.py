"""The evidence report over the audit log: where requests ran, what happened, and proof that nothing
confidential left the machine.

"Sent out" is counted conservatively (over-counting is the safe direction for a figure that must be 0): a
record counts when its ``location`` is an external provider (anything but ``local``), its effective
``label`` is confidential or restricted, and its outcome is not ``denied`` (refused before sending) nor
``started`` (a write-ahead record, followed by the final one). Request records and security records (the
policy's egress decisions) both count; several records of one request count once (by ``request_id``).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

from inhouse.governance.audit.chain import AuditRecord, format_ts
from inhouse.governance.audit.log import INTERRUPTED, STARTED, AuditLog

SENSITIVE_LABELS = frozenset({"confidential", "restricted"})
LOCAL = "local"
NOT_SENT = frozenset({"denied", STARTED})
_MAX_LISTED = 100


def is_sent_out_sensitive(rec: AuditRecord) -> bool:
    return (rec.location not in (None, LOCAL) and (rec.label or "").lower() in SENSITIVE_LABELS
            and rec.outcome not in NOT_SENT)


def build_report(log: AuditLog, *, since: str | None = None, now: float | None = None) -> dict[str, Any]:
    """The report as plain JSON-ready data (``inhouse audit report --json`` prints it as is)."""
    by_destination: Counter[str] = Counter()
    external_by_label: Counter[str] = Counter()
    by_action: dict[str, Counter[str]] = defaultdict(Counter)
    by_kind: Counter[str] = Counter()
    sent_items: dict[str, list[int]] = {}
    requests = without_model = records = interrupted = 0
    first_ts = last_ts = None
    for rec in log.iter_records(since=since):
        records += 1
        first_ts = first_ts or rec.ts
        last_ts = rec.ts
        by_kind[rec.kind] += 1
        by_action[rec.action][rec.outcome] += 1
        if rec.kind == "request" and rec.outcome != STARTED:
            requests += 1
            interrupted += rec.outcome == INTERRUPTED
            if rec.location is None:
                without_model += 1
            else:
                by_destination[rec.location] += 1
                if rec.location != LOCAL:
                    external_by_label[(rec.label or "unlabelled").lower()] += 1
        if is_sent_out_sensitive(rec):
            sent_items.setdefault(rec.request_id or f"seq:{rec.seq}", []).append(rec.seq)
    integrity = log.verify()
    return {
        "since": since,
        "generated_at": format_ts(time.time() if now is None else now),
        "period": {"first": first_ts, "last": last_ts},
        "integrity": integrity.to_dict(),
        "records": records,
        "records_by_kind": dict(sorted(by_kind.items())),
        "requests": {
            "total": requests,
            "by_destination": dict(sorted(by_destination.items())),
            "without_model": without_model,
            # Running when the server stopped (crash, kill); closed by the next start. Started, not lost.
            "interrupted": interrupted,
            "unfinished": len(log.unfinished()),
            "external_by_label": dict(sorted(external_by_label.items())),
        },
        "by_action": {a: dict(sorted(c.items())) for a, c in sorted(by_action.items())},
        "confidential_sent_out": {
            "count": len(sent_items),
            "items": [{"item": k, "seqs": v} for k, v in list(sent_items.items())[:_MAX_LISTED]],
        },
    }
