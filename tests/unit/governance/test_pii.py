"""The PII redactor: each recogniser (with checksum negatives), placeholders, restore, the corpus figures.

The whole module runs under ``deny_external_connections``: building Presidio, spaCy's blank pipeline and
the offline tldextract must not even attempt a connection or a DNS lookup.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inhouse.governance.pii.checksums import (
    iban_check_digits,
    iban_valid,
    luhn_check_digit,
    luhn_valid,
    prc_id_check_char,
    prc_id_valid,
)
from inhouse.governance.pii.company_corpus import TEMPLATES, generate_company_corpus
from inhouse.governance.pii.corpus import NAMES, generate_corpus
from inhouse.governance.pii.evaluate import evaluate, format_report
from inhouse.governance.pii.redact import RedactionSession, Redactor, message_texts
from inhouse.testing.network_guard import NetworkAttempt, deny_external_connections

ID_BODY = "11010519491231002"
VALID_ID = ID_BODY + prc_id_check_char(ID_BODY)  # 11010519491231002X
CARD = "6222021234567890"[:-1] + luhn_check_digit("622202123456789")
IBAN = "DE" + iban_check_digits("DE", "370400440532013000") + "370400440532013000"


@pytest.fixture(scope="module")
def no_network() -> Iterator[list[str]]:
    with deny_external_connections() as attempts:
        yield attempts
    assert attempts == [], f"the PII code tried to reach the network: {attempts}"


@pytest.fixture(scope="module")
def redactor(no_network: list[str]) -> Redactor:
    r = Redactor(names=lambda: ["Alice Wang", "张伟", "欧阳明辉"])
    r.warm_up()
    return r


@pytest.fixture(autouse=True)
def _guarded(no_network: list[str]) -> None:
    return None


def kinds(redactor: Redactor, text: str) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start:f.end]) for f in redactor.analyze(text)]


def test_the_guard_really_blocks(no_network: list[str]) -> None:
    with pytest.raises(NetworkAttempt):
        socket.create_connection(("192.0.2.1", 443), timeout=0.1)
    with pytest.raises(NetworkAttempt):
        socket.getaddrinfo("publicsuffix.org", 443)
    no_network.clear()  # those two were ours


def test_checksums() -> None:
    assert VALID_ID == "11010519491231002X" and prc_id_valid(VALID_ID)
    assert not prc_id_valid(ID_BODY + "1")
    assert not prc_id_valid("110105194913310021")  # month 13
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB83 WEST 1234 5698 7654 32")
    assert iban_check_digits("GB", "WEST12345698765432") == "82"


@pytest.mark.parametrize(("text", "expected"), [
    ("mail alice@example.com now", [("EMAIL", "alice@example.com")]),
    ("邮箱bob.li@qinglan.com.cn请回复", [("EMAIL", "bob.li@qinglan.com.cn")]),
    ("any domain is an address: a@b.notatld", [("EMAIL", "a@b.notatld")]),
    # The case: internal domains that no public-suffix list knows.
    ("zhang.wei@qinglan-components.example, li.na@hr.qinglan.local",
     [("EMAIL", "zhang.wei@qinglan-components.example"), ("EMAIL", "li.na@hr.qinglan.local")]),
    ("ops@corp.internal ops@x.corp ops@y.lan ops@z.test ops@nas.home.arpa",
     [("EMAIL", "ops@corp.internal"), ("EMAIL", "ops@x.corp"), ("EMAIL", "ops@y.lan"), ("EMAIL", "ops@z.test"),
      ("EMAIL", "ops@nas.home.arpa")]),
    ("images icon@2x.png and lodash@4.17.21 are not addresses", []),
    ("ssh db01.qinglan.corp; 主机app01.qinglan.lan宕机",
     [("HOST", "db01.qinglan.corp"), ("HOST", "app01.qinglan.lan")]),
    ("see https://jira.qinglan.internal/browse/OPS-12 and https://docs.python.org/3/",
     [("URL", "https://jira.qinglan.internal/browse/OPS-12")]),
    ("admin at http://10.0.3.7:8080/admin or http://wiki/Home, share \\\\fs01\\finance\\2026",
     [("URL", "http://10.0.3.7:8080/admin"), ("URL", "http://wiki/Home"), ("URL", "\\\\fs01\\finance\\2026")]),
    ("files config.py, README.md and example.com are public names", []),
    ("手机号13812345678，", [("PHONE", "13812345678")]),
    ("call 139-1234-5678 today", [("PHONE", "139-1234-5678")]),
    ("电话 +86 138 1234 5678", [("PHONE", "+86 138 1234 5678")]),
    ("London +44 20 7946 0958.", [("PHONE", "+44 20 7946 0958")]),
    ("订单号13812345678已发货", []),  # negative context: an order number of phone shape
    ("12345678901234 is too long for a mobile", []),
    (f"身份证{VALID_ID}。", [("CN_ID", VALID_ID)]),
    (f"ID {ID_BODY}1 has a wrong check character", []),
    (f"card {CARD} please", [("BANK_CARD", CARD)]),
    ("card 4111 1111 1111 1111", [("BANK_CARD", "4111 1111 1111 1111")]),
    ("card 4111 1111 1111 1112", []),  # Luhn fails
    ("order 2024061200012345", []),  # no issuer prefix
    (f"IBAN {IBAN}.", [("IBAN", IBAN)]),
    ("IBAN GB82 WEST 1234 5698 7654 32 ok", [("IBAN", "GB82 WEST 1234 5698 7654 32")]),
    ("IBAN GB83 WEST 1234 5698 7654 32 ok", []),  # mod 97 fails
    ("from 10.20.30.40.", [("IP", "10.20.30.40")]),
    ("v6 2001:db8::8a2e:370:7334 and fe80::1", [("IP", "2001:db8::8a2e:370:7334"), ("IP", "fe80::1")]),
    ("version v1.2.3.4 and 999.1.1.1 and 12:30:45", []),
    ("key sk-abcdefghijklmnopqrstuvwx123", [("SECRET", "sk-abcdefghijklmnopqrstuvwx123")]),
    ("AWS AKIAIOSFODNN7EXAMPLE here", [("SECRET", "AKIAIOSFODNN7EXAMPLE")]),
    ("gh ghp_" + "a1B2" * 9, [("SECRET", "ghp_" + "a1B2" * 9)]),
    ("ours ih_0123456789abcdef_" + "Ab1_" * 10, [("SECRET", "ih_0123456789abcdef_" + "Ab1_" * 10)]),
    ("password: hunter2hunter2", [("SECRET", "hunter2hunter2")]),
    ("数据库密码是 Qinglan@2026", [("SECRET", "Qinglan@2026")]),
    ("postgres://app:S3cr3t@db.qinglan.internal:5432/erp",
     [("SECRET", "postgres://app:S3cr3t@db.qinglan.internal:5432/erp")]),
    ("Server=db01;User Id=sa;Password=P@ssw0rd;", [("SECRET", "P@ssw0rd")]),
    ("AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", [("SECRET", "AKIAIOSFODNN7EXAMPLE")]),
    ("aliyun LTAI5tFzq8xYwVbN3mKpR2sQ", [("SECRET", "LTAI5tFzq8xYwVbN3mKpR2sQ")]),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3",
     [("SECRET", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3")]),
    ("Authorization: Basic YWRtaW46UzNjcjN0IQ==", [("SECRET", "YWRtaW46UzNjcjN0IQ==")]),
    ("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBvQ\n-----END EC PRIVATE KEY-----",
     [("SECRET", "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBvQ\n-----END EC PRIVATE KEY-----")]),
    # Settings, placeholders and prose are not secrets: a false secret refuses the whole request.
    ("max_tokens: 100000, auth: required, token: expired, the password is incorrect", []),
    ('password = "${DB_PASSWORD}", secret: <your-secret-here>, api_key: xxxxxxxx', []),
    ("random Zx8Kq2Lm9Np4Rt7Vw1Yb3Cd6Fg5Hj0", [("SECRET", "Zx8Kq2Lm9Np4Rt7Vw1Yb3Cd6Fg5Hj0")]),
    ("uuid 550e8400-e29b-41d4-a716-446655440000, commit 9fceb02d0ae598e95dc970b74767f19372d61af8", []),
    ("Alice Wang approved; alice wang too", [("PERSON", "Alice Wang"), ("PERSON", "alice wang")]),
    ("明天和张伟开会，欧阳明辉也来", [("PERSON", "张伟"), ("PERSON", "欧阳明辉")]),
    ("Alice Wangler is someone else", []),
    ("It costs ¥1,299.00 on 2026-06-12.", []),
])
def test_recognizers(redactor: Redactor, text: str, expected: list[tuple[str, str]]) -> None:
    assert kinds(redactor, text) == expected


def test_an_id_is_not_also_a_card_or_phone(redactor: Redactor) -> None:
    for seq in range(100, 400):
        body = f"44030519900101{seq}"[:17]
        value = body + prc_id_check_char(body)
        found = kinds(redactor, f"身份证{value}")
        assert found == [("CN_ID", value)], found


def test_placeholders_are_stable_per_session(redactor: Redactor) -> None:
    session = RedactionSession()
    a = redactor.redact("Mail alice@example.com or bob@example.com, then alice@example.com again.", session)
    assert a == "Mail <EMAIL_1> or <EMAIL_2>, then <EMAIL_1> again."
    b = redactor.redact("手机13812345678，邮箱bob@example.com", session)
    assert b == "手机<PHONE_1>，邮箱<EMAIL_2>"
    assert session.report() == {"EMAIL": 4, "PHONE": 1}
    assert session.restore("Reply to <EMAIL_2> and <PHONE_1>; <EMAIL_9> is unknown.") == (
        "Reply to bob@example.com and 13812345678; <EMAIL_9> is unknown.")
    other = RedactionSession()
    assert redactor.redact("bob@example.com", other) == "<EMAIL_1>"  # a new request starts afresh


def test_report_holds_counts_never_values(redactor: Redactor) -> None:
    session = RedactionSession()
    redactor.redact(f"Alice Wang, {VALID_ID}, alice@example.com", session)
    report = repr(session.report())
    assert "alice" not in report.lower() and VALID_ID not in report
    assert session.report() == {"CN_ID": 1, "EMAIL": 1, "PERSON": 1}


def test_redact_messages_keeps_structure(redactor: Redactor) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "My mail is alice@example.com"}], "name": "Alice Wang"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "send", "arguments": '{"to": "13812345678"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sent to 13812345678"},
    ]
    session = RedactionSession()
    out = redactor.redact_messages(messages, session)
    assert out[0] == messages[0]
    assert out[1]["content"][0] == {"type": "text", "text": "My mail is <EMAIL_1>"}
    assert out[1]["name"] == "<PERSON_1>"
    assert out[2]["tool_calls"][0]["function"]["arguments"] == '{"to": "<PHONE_1>"}'
    assert out[2]["tool_calls"][0]["id"] == "call_1" and out[3]["tool_call_id"] == "call_1"
    assert out[3]["content"] == "sent to <PHONE_1>"
    joined = " ".join(message_texts(out))
    assert "alice@example.com" not in joined and "13812345678" not in joined


def test_names_come_from_a_live_source(no_network: list[str]) -> None:
    names = ["Jonas Becker"]
    r = Redactor(names=lambda: names)
    assert [f.kind for f in r.analyze("Jonas Becker and Maria Gonzalez")] == ["PERSON"]
    names.append("Maria Gonzalez")  # a user added to the directory is redacted from the next request on
    assert [f.kind for f in r.analyze("Jonas Becker and Maria Gonzalez")] == ["PERSON", "PERSON"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=60), max_size=8))
def test_restore_across_any_chunk_boundaries(cuts: list[int]) -> None:
    session = RedactionSession()
    session.placeholder("EMAIL", "alice@example.com")
    session.placeholder("BANK_CARD", "4111 1111 1111 1111")
    answer = "Write to <EMAIL_1> < soon >, card <BANK_CARD_1>; a<b and <UNKNOWN_3> stay.<EMAIL_1>"
    points = sorted({min(c, len(answer)) for c in cuts})
    chunks = [answer[i:j] for i, j in zip([0, *points], [*points, len(answer)], strict=True)]
    restorer = session.stream_restorer()
    out = "".join(restorer.feed(c) for c in chunks) + restorer.finish()
    assert out == session.restore(answer)
    assert out == ("Write to alice@example.com < soon >, card 4111 1111 1111 1111; a<b and <UNKNOWN_3> "
                   "stay.alice@example.com")


def test_stream_restorer_does_not_hold_ordinary_text() -> None:
    session = RedactionSession()
    session.placeholder("EMAIL", "a@example.com")
    r = session.stream_restorer()
    assert r.feed("1 < 2 is true") == "1 < 2 is true"
    assert r.feed("see <EM") == "see "
    assert r.feed("AIL_1> ok") == "a@example.com ok"
    assert r.feed("<") == "" and r.finish() == "<"


def test_corpus_recall_and_precision(redactor: Redactor) -> None:
    names_redactor = Redactor(names=NAMES)
    scores = evaluate(names_redactor, generate_corpus(600, seed=11))
    report = format_report(scores)
    structured = ("EMAIL", "PHONE", "CN_ID", "BANK_CARD", "IBAN", "IP", "SECRET")
    assert scores.recall(structured) >= 0.99, report
    assert scores.precision(structured) >= 0.95, report
    assert scores.leaked == 0, report


def test_company_corpus_nothing_leaves(redactor: Redactor) -> None:
    """Config files, e-mail threads, tickets and chat logs (EN + ZH): every template twice over. Nothing labelled
    may go out (a secret keeps the prompt back; everything else is redacted) and few findings are false."""
    scores = evaluate(Redactor(names=NAMES), generate_company_corpus(4 * len(TEMPLATES), seed=5))
    report = format_report(scores)
    assert scores.leaked_out == 0 and scores.leaked == 0, report
    assert scores.recall(("EMAIL", "HOST", "URL", "IP", "SECRET", "PHONE")) >= 0.99, report
    assert scores.precision(("EMAIL", "HOST", "URL", "IP", "SECRET", "PHONE")) >= 0.98, report
    assert 0 < scores.kept_back < scores.n_samples, report


def test_company_domains_are_internal(no_network: list[str]) -> None:
    """`governance.internal_domains`: hosts and URLs under the company's own public domain are redacted too."""
    r = Redactor(internal_domains=["qinglan.com.cn"])
    text = ("push to git.qinglan.com.cn, see https://oa.qinglan.com.cn/flow/12, mail alice@qinglan.com.cn, "
            "not www.qq.com")
    assert kinds(r, text) == [("HOST", "git.qinglan.com.cn"), ("URL", "https://oa.qinglan.com.cn/flow/12"),
                              ("EMAIL", "alice@qinglan.com.cn")]
    assert kinds(Redactor(), "push to git.qinglan.com.cn") == []  # without the setting it is a public name
