"""Values written in the other forms people type and paste: full-width digits, odd spaces and zero-width characters,
other groupings, accented and Chinese mailbox names, passwords after a bare space, curl -u. And their look-alikes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inhouse.governance.pii.checksums import luhn_check_digit, prc_id_check_char
from inhouse.governance.pii.normalise import normalise
from inhouse.governance.pii.redact import RedactionSession, Redactor
from inhouse.testing.redaction import offline_redactor

FW = str.maketrans("0123456789", "０１２３４５６７８９")
ID_X = next(b + "X" for b in (f"11010519800101{p:03d}" for p in range(100, 999)) if prc_id_check_char(b) == "X")
CARD = "622202123456789" + luhn_check_digit("622202123456789")
CARD16 = "411111111111111" + luhn_check_digit("411111111111111")
CARD19 = "622848001234567890" + luhn_check_digit("622848001234567890")


@pytest.fixture(scope="module")
def redactor() -> Iterator[Redactor]:
    with offline_redactor(["王小明"]) as r:
        yield r


@pytest.mark.parametrize(("text", "value", "kind"), [
    ("手机 １３８１２３４５６７８，请回电", "１３８１２３４５６７８", "PHONE"),
    ("手机 138 12345678", "138 12345678", "PHONE"),
    ("手机 1381 234 5678", "1381 234 5678", "PHONE"),
    ("手机 138.1234.5678", "138.1234.5678", "PHONE"),
    ("手机 138\u00a01234\u00a05678", "138\u00a01234\u00a05678", "PHONE"),
    ("手机 138\u30001234\u30005678", "138\u30001234\u30005678", "PHONE"),
    ("手机 138\u200b1234\u200b5678", "138\u200b1234\u200b5678", "PHONE"),
    (f"身份证 {ID_X[:6]} {ID_X[6:14]} {ID_X[14:]}", f"{ID_X[:6]} {ID_X[6:14]} {ID_X[14:]}", "CN_ID"),
    ("身份证 " + ID_X.translate(FW), ID_X.translate(FW), "CN_ID"),
    ("身份证 " + ID_X[:-1].translate(FW) + "Ｘ", ID_X[:-1].translate(FW) + "Ｘ", "CN_ID"),
    ("卡号 " + CARD.translate(FW), CARD.translate(FW), "BANK_CARD"),
    (f"卡号 {CARD19[:6]} {CARD19[6:]}", f"{CARD19[:6]} {CARD19[6:]}", "BANK_CARD"),
    ("请发到 alice.wang＠qinglan.com.cn ，谢谢", "alice.wang＠qinglan.com.cn", "EMAIL"),
    ("Write to josé.garcía@qinglan.com.cn today", "josé.garcía@qinglan.com.cn", "EMAIL"),
    ("Write to jose\u0301@qinglan.com.cn today", "jose\u0301@qinglan.com.cn", "EMAIL"),  # a combining accent
    ("mail 张三@qinglan.com.cn", "张三@qinglan.com.cn", "EMAIL"),
    ("邮箱 ａｌｉｃｅ＠ｑｉｎｇｌａｎ．ｃｏｍ", "ａｌｉｃｅ＠ｑｉｎｇｌａｎ．ｃｏｍ", "EMAIL"),
    ("测试环境 账号 admin 密码 Hengtai#2025x9，登录报错", "Hengtai#2025x9", "SECRET"),
    ("user: bob PW: Hengtai#2025x9 - what should I check?", "Hengtai#2025x9", "SECRET"),
    ("Why does `curl -u admin:Hengtai#2025x9 https://api.example.com/v1/x` fail?", "Hengtai#2025x9", "SECRET"),
    ("mysql --password Hengtai2025x9 -h db01", "Hengtai2025x9", "SECRET"),
    ("数据库密碼：Hengtai#2025x9，帮我写通知", "Hengtai#2025x9", "SECRET"),
    ("数据库 password＝Hengtai2025x9 ，帮我写通知", "Hengtai2025x9", "SECRET"),
    ("password Winter2026!", "Winter2026!", "SECRET"),
    # percent-encoded, as in a query string or a log line copied from a browser
    ("mail me at zhang.wei%40qinglan.com please", "zhang.wei%40qinglan.com", "EMAIL"),
    ("GET /login?user=bob&password%3DHengtai2025x9 HTTP/1.1", "Hengtai2025x9", "SECRET"),
    (f"card {CARD16[:4]}.{CARD16[4:8]}.{CARD16[8:12]}.{CARD16[12:]} thanks",
     f"{CARD16[:4]}.{CARD16[4:8]}.{CARD16[8:12]}.{CARD16[12:]}", "BANK_CARD"),
    ("身份证号 110105800101123 请核对", "110105800101123", "CN_ID"),  # a first-generation, 15-digit ID
    ("ID card no. 110105800101123", "110105800101123", "CN_ID"),
    ("password=ab12 fails", "ab12", "SECRET"),
    ("pwd: 4821", "4821", "SECRET"),
    ("API key 9f86d081884c7d659a2feaa0c55ad015 is not accepted", "9f86d081884c7d659a2feaa0c55ad015", "SECRET"),
    ("密钥 Qx7vT2mB9kLp4wZr8sYd3FhN", "Qx7vT2mB9kLp4wZr8sYd3FhN", "SECRET"),
    # passwords with Chinese in them, and a short one glued to the prose after it
    ("密码：张三丰@1988", "张三丰@1988", "SECRET"),
    ("WiFi密码：我爱北京2025", "我爱北京2025", "SECRET"),
    ("password: Hengtai中2025x#9", "Hengtai中2025x#9", "SECRET"),
    ("打印机密码：ab20申请人已核验", "ab20", "SECRET"),
])
def test_other_forms_are_found_and_replaced_whole(redactor: Redactor, text: str, value: str, kind: str) -> None:
    assert any(f.kind == kind for f in redactor.analyze(text)), text
    session = RedactionSession()
    out = redactor.redact(text, session)
    assert value not in out and session.restore(out) == text  # the original form comes back


@pytest.mark.parametrize("text", [
    "Release 13.1234.5678 of the firmware", "版本 2.13.8", "截止 2026-12-31 12:30", "会议 12:30 在 138 会议室",
    "价格 138.50 元", "经度 139.12345678", "ISBN 978-7-111-12345-6", "订单号 20261231 12345678 已发货",
    "Order 1381 12345678 shipped", "The password reset link expired.", "密码 错误，请重试", "password policy2024 page",
    "docker run -u 1000:1000 app", "curl -u admin:$API_PASSWORD https://api.example.com", "IP 10.1.2.3 is down",
    "张三说@所有人 明天开会", "icon@2x.png", "lodash@4.17.21", "时间 １２:３０，数量 １３８",
    "订单 110105800101123", "发票号 110105800101123", "the value 0.4111111111111111 is small", "password: reset",
    "token: 1h", "pwd is 1234", "access key rotation is due", "commit 9f86d081884c7d659a2feaa0c55ad015",
    "growth was 50%3D and 20%", "身份证号 110105801301123",  # month 13
])
def test_look_alikes_stay(redactor: Redactor, text: str) -> None:
    kinds = {f.kind for f in redactor.analyze(text)}
    assert not kinds & {"PHONE", "CN_ID", "BANK_CARD", "EMAIL", "SECRET"}, (text, kinds)


def test_the_plain_copy_maps_back_to_the_original() -> None:
    assert normalise("plain ascii") is None and normalise("中文，没有全角数字") is None
    text = "手机\u200b１３８ 密码＝x"
    plain = normalise(text)
    assert plain is not None and plain.text == "手机138 密码=x"
    start = plain.text.index("138")
    assert plain.span(start, start + 3) == (text.index("１"), text.index("８") + 1)


def test_the_normalised_copy_is_made_only_when_a_character_would_change() -> None:
    from inhouse.governance.pii.normalise import normalise

    assert normalise("请在周五前回复，谢谢：张三") is None  # Chinese prose and its kept punctuation: no copy
    assert normalise("plain ascii") is None and normalise("100% of the url %20 and %4") is None
    for typed, plain in (("手机 １３８１２３４５６７８", "手机 13812345678"), ("138\u200b1234", "1381234"),
                         ("a\u00a0b", "a b"), ("ｐａｓｓｗｏｒｄ＝x", "password=x"),
                         ("a%40b.com%3a%3D%22", 'a@b.com:="'), ("一%40二", "一@二")):
        copy = normalise(typed)
        assert copy is not None and copy.text == plain
