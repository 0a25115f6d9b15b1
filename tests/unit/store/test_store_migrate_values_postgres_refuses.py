"""``inhouse store migrate`` moves an embedded install holding values SQLite keeps and PostgreSQL would refuse as
they are: text with U+0000 (copied with U+FFFD in its place, counted per table in the output), a key limit past
2^31-1, a word over 2,046 bytes in a document. Before, each stopped the whole copy."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inhouse.bootstrap import Services, build_services
from inhouse.cli.main import app as cli
from inhouse.config import Settings
from inhouse.errors import Conflict
from inhouse.kb.access import AccessScope
from inhouse.kb.index.protocol import SearchFilters
from inhouse.store.copy import _AUDIT_COLUMNS, CopyReport, _without_nul
from inhouse.testing.fakes import build_fake_engine
from inhouse.types import Actor

ADMIN = Actor("key_setup", "setup", role="admin")
BIG = 5_000_000_000


def services(settings: Settings) -> Services:
    return build_services(settings, load_engine=lambda spec: build_fake_engine(spec.name))


@pytest.mark.integration
def test_nul_text_big_limits_and_long_words_move_to_postgresql(tmp_path: Path, postgres_url: str) -> None:
    data, hexdump = tmp_path / "data", secrets.token_hex(1100)
    s = services(Settings(data_dir=data, kb={"embedder": "fake"}))
    try:
        key, secret = s.keys.create_key("batch jobs", tokens_per_day_limit=BIG)
        actor = s.keys.authenticate(secret)
        assert s.conversations is not None and s.kb is not None
        conv = s.conversations.create(actor, title="Q3 plan\x00draft", messages=[{"role": "user", "content": "hi"}])
        s.directory.create_group("staff")
        # (an access list: an index with none cannot be exported yet, kb/index/sqlite/export.py)
        s.kb.create_collection(ADMIN, "general", groups=["staff"])
        s.kb.add_document(ADMIN, "general", f"Firmware image digest:\n\n{hexdump}\n".encode(), "dump.txt")
    finally:
        s.close()

    result = CliRunner().invoke(cli, ["store", "migrate", "--to", postgres_url, "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "conversations: 1 (1 text value held U+0000, copied with U+FFFD in its place)" in out
    assert out.count("U+0000") == 1  # the other tables had none

    s = services(Settings(data_dir=data, kb={"embedder": "fake"}, store={"url": postgres_url}))
    try:
        assert s.conversations is not None and s.kb is not None
        assert s.conversations.get(actor, conv.id).title == "Q3 plan\ufffddraft"
        assert s.keys.get(key.id).tokens_per_day_limit == BIG
        # The copied chunk's keyword terms hold the long word (cut): its first 1,500 characters find it as a prefix.
        assert s.kb.store.keyword_search(AccessScope.of(ADMIN), hexdump[:1500], SearchFilters(), 5)
        assert s.audit.verify().ok
    finally:
        s.close()


def test_nul_is_replaced_and_counted_per_table_but_an_audit_record_holding_one_is_refused() -> None:
    report = CopyReport(copied={"conversations": 3, "users": 1})
    rows = [("conv_1", "a\x00b\x00", None, 1.0), ("conv_2", "plain", b"\x00bytes", 2.0), ("conv_3", "\x00", "\x00", 3)]
    assert [report.replace_nul("conversations", r) for r in rows] == [
        ("conv_1", "a\ufffdb\ufffd", None, 1.0), ("conv_2", "plain", b"\x00bytes", 2.0),
        ("conv_3", "\ufffd", "\ufffd", 3)]
    assert report.nul_replaced == {"conversations": 3}
    assert report.copied_line("conversations") == \
        "conversations: 3 (3 text values held U+0000, copied with U+FFFD in its place)"
    assert report.copied_line("users") == "users: 1"
    record = tuple(7 if c == "seq" else "x" for c in _AUDIT_COLUMNS)
    assert _without_nul(record) == record
    with pytest.raises(Conflict, match="Audit record 7 holds a NUL"):
        _without_nul(tuple(7 if c == "seq" else "x\x00" if c == "reason" else "x" for c in _AUDIT_COLUMNS))
