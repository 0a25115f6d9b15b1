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

from inhouse.governance.audit.chain import as_text, format_ts
from inhouse.governance.audit.log import INTERRUPTED, STARTED, AuditLog

SENSITIVE_LABELS = frozenset({"confidential", "restricted"})
LOCAL = "local"
NOT_SENT = frozenset({"denied", STARTED})
_MAX_LISTED = 100
# What the report counts by (``_GROUPED``'s order is the order ``build_report`` unpacks).
_GROUPED = ("kind", "action", "outcome", "location", "label")


def is_sent_out_sensitive(location: str | None, label: str | None, outcome: str) -> bool:
    return location not in (None, LOCAL) and (label or "").lower() in SENSITIVE_LABELS and outcome not in NOT_SENT


def build_report(log: AuditLog, *, since: str | None = None, now: float | None = None) -> dict[str, Any]:
    """The report as plain JSON-ready data (``inhouse audit report --json`` prints it as is).

    The counts come from one GROUP BY in the database; only the records of a group that was sent out (which should
    be none) are read into Python. Checking the chain (``verify``) still reads every record, as it must."""
    by_destination: Counter[str] = Counter()
    external_by_label: Counter[str] = Counter()
    by_action: dict[str, Counter[str]] = defaultdict(Counter)
    by_kind: Counter[str] = Counter()
    sent_out: list[tuple[int, str]] = []  # (seq, item) of every record that counts as sent out
    requests = without_model = records = interrupted = 0
    first_seq = last_seq = None
    for group in log.group_counts(_GROUPED, since=since):
        kind, action, outcome, location, label = (_text(v) for v in group.values)
        stored = dict(zip(_GROUPED, group.values, strict=True))  # the values as stored: what finds the group again
        n = group.count
        records += n
        first_seq = group.first_seq if first_seq is None else min(first_seq, group.first_seq)
        last_seq = group.last_seq if last_seq is None else max(last_seq, group.last_seq)
        by_kind[kind] += n
        by_action[action][outcome] += n
        if kind == "request" and outcome != STARTED:
            requests += n
            interrupted += n if outcome == INTERRUPTED else 0
            if location is None:
                without_model += n
            else:
                by_destination[location] += n
                if location != LOCAL:
                    external_by_label[(label or "unlabelled").lower()] += n
        if is_sent_out_sensitive(location, label, outcome):
            sent_out += [(rec.seq, rec.request_id or f"seq:{rec.seq}")
                         for rec in log.iter_records(since=since, **stored)]
    sent_items: dict[str, list[int]] = {}
    for seq, item in sorted(sent_out):
        sent_items.setdefault(item, []).append(seq)
    integrity = log.verify()
    return {
        "since": since,
        "generated_at": format_ts(time.time() if now is None else now),
        "period": {"first": _ts_of(log, first_seq), "last": _ts_of(log, last_seq)},
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


def _text(value: Any) -> Any:
    """A grouped value as the report shows it: a BLOB written into a column behind the log's back (``verify``
    reports its record) as text, so the report still counts it and stays JSON."""
    return value if value is None or isinstance(value, str) else as_text(value)


def _ts_of(log: AuditLog, seq: int | None) -> str | None:
    if seq is None:
        return None
    return next((rec.ts for rec in log.iter_records(after_seq=seq - 1, limit=1)), None)
