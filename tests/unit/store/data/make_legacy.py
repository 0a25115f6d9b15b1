"""Writes a data directory as release 6c87c30 left it (``legacy-6c87c30.tar.gz`` was made by this script).

It imports modules of that release (``inhouse.store.db``, ``inhouse.governance.audit`` as one module), so run it
with that tree first on the path, e.g. ``git worktree add OLD 6c87c30`` (OLD: any empty directory) then
``PYTHONPATH=OLD/src python tests/unit/store/data/make_legacy.py OUT_DIR`` and
``tar czf legacy-6c87c30.tar.gz -C OUT_DIR .``.
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from inhouse.store.db import Database  # type: ignore[import-not-found]

from inhouse.governance.audit import AuditLog  # type: ignore[attr-defined]
from inhouse.governance.directory import UserDirectory
from inhouse.governance.identity import KeyStore
from inhouse.governance.labels import Label
from inhouse.governance.quotas import QuotaService
from inhouse.kb.access import Acl
from inhouse.kb.document import Chunk
from inhouse.kb.index.protocol import NewDocument
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.store.conversations import ConversationStore
from inhouse.types import Actor


def clock() -> float:
    return 1_780_000_000.0


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    db = Database(out / "inhouse.db")
    db.migrate()
    audit = AuditLog(out / "audit.db", clock=clock)
    keys = KeyStore(db, audit=audit, clock=clock)
    directory = UserDirectory(db, audit=audit, clock=clock)
    ann = directory.create_user("ann", role="admin")
    hr = directory.create_group("hr")
    directory.add_member(hr.id, ann.id)
    rec, secret = keys.create_key("ann laptop", user_id=ann.id)
    QuotaService(db, clock=clock).record_usage(rec.id, 123)
    conv = ConversationStore(db, clock=clock).create(Actor(rec.id, "ann laptop", user_id=ann.id), title="old chat",
                                                      messages=[{"role": "user", "content": "你好"}])
    audit.record_request(action="chat:create", outcome="success", actor_key_id=rec.id, model="m", location="local")
    db.close()
    audit.close()
    kb = SqliteIndexStore(out / "kb.db", dim=8, clock=clock)
    col = kb.create_collection("hr", acl=Acl(groups=frozenset({"hr"})))
    texts = ["annual leave is 18 days", "工作日加班按 1.5 倍工资计算"]
    data = "\n".join(texts).encode()
    chunks = [Chunk(index=i, text=t, content=t, token_count=3, kind="paragraph", section="", page_start=None,
                    page_end=None) for i, t in enumerate(texts)]
    doc = kb.put_document(NewDocument(col.id, "leave.txt", hashlib.sha256(data).hexdigest(), Label.INTERNAL, None,
                                      "Leave", "leave.txt", "text/plain", data, chunks,
                                      np.eye(8, dtype=np.float32)[:2])).document
    kb.close()
    (out / "legacy.json").write_text(json.dumps({
        "release": "6c87c30", "secret": secret, "key_id": rec.id, "user_id": ann.id, "group": "hr",
        "conversation_id": conv.id, "collection_id": col.id, "document_id": doc.id, "audit_records": 5}, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
