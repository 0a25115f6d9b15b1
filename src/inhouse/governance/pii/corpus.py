"""A generated, labelled corpus for measuring PII detection (English and Chinese sentences).

Every value is synthetic but well-formed: PRC ID numbers with a correct MOD 11-2 check character, Luhn-valid
card numbers, IBANs with correct mod-97 check digits, phone numbers libphonenumber accepts, random secrets
in the shapes real providers issue. Each sentence also gets, half of the time, a hard negative of a similar
shape that must NOT be redacted: order and invoice numbers, ID numbers with a wrong check character,
Luhn-invalid card numbers, dates, times, prices, version strings, UUIDs and commit hashes.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from inhouse.governance.pii.checksums import iban_check_digits, luhn_check_digit, prc_id_check_char

NAMES_EN = ("Alice Wang", "Robert Miller", "Priya Natarajan", "Jonas Becker", "Maria Gonzalez", "Chen Jie")
NAMES_ZH = ("张伟", "王芳", "李娜", "刘洋", "陈静", "欧阳明辉")
NAMES = NAMES_EN + NAMES_ZH


@dataclass(frozen=True)
class Span:
    kind: str
    start: int
    end: int
    value: str


@dataclass(frozen=True)
class Sample:
    text: str
    spans: tuple[Span, ...]
    lang: str
    negatives: tuple[str, ...] = ()


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _alnum(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    while True:
        s = "".join(rng.choice(alphabet) for _ in range(n))
        # Real keys mix cases and digits; a draw without one of them is re-drawn.
        if alphabet != string.ascii_letters + string.digits or (
                any(c.isupper() for c in s) and any(c.islower() for c in s) and any(c.isdigit() for c in s)):
            return s


# Full-width digits and letters, as a Chinese input method types them.
FULL_WIDTH = str.maketrans("0123456789Xx@", "０１２３４５６７８９Ｘｘ＠")


def gen_email(rng: random.Random) -> str:
    user = rng.choice(["alice", "bob.li", "j.smith", "wang_fang", "ops-team", "x9", "li.na+hr"])
    domain = rng.choice(["example.com", "qinglan.com.cn", "mail.example.co.uk", "163.com", "outlook.de",
                         "corp.io"])
    style = rng.random()
    if style < 0.1:
        return f"{rng.choice(['josé.garcía', 'zoë.müller', 'françois'])}@{domain}"  # accented local parts
    if style < 0.2:
        return f"{rng.choice(['张三', '王小明', '财务部'])}@{domain}"  # a Chinese mailbox name
    if style < 0.3:
        return f"{user}{rng.randint(1, 999)}＠{domain}"  # a full-width at sign
    if style < 0.35:
        return f"{user}{rng.randint(1, 999)}%40{domain}"  # percent-encoded, from a query string
    return f"{user}{rng.randint(1, 999)}@{domain}"


def gen_phone(rng: random.Random) -> str:
    import phonenumbers

    if rng.random() < 0.6:
        body = rng.choice("3456789") + _digits(rng, 9)
        style = rng.randrange(10)
        if style == 0:
            return "1" + body
        if style == 1:
            return f"1{body[:2]}-{body[2:6]}-{body[6:]}"
        if style == 2:
            return f"+86 1{body[:2]} {body[2:6]} {body[6:]}"
        if style == 3:
            return ("1" + body).translate(FULL_WIDTH)
        if style == 4:
            return f"1{body[:2]} {body[2:]}"  # 3-8
        if style == 5:
            return f"1{body[:3]} {body[3:6]} {body[6:]}"  # 4-3-4
        if style == 6:
            return f"1{body[:2]}.{body[2:6]}.{body[6:]}"
        if style == 7:
            sep = rng.choice(["\u00a0", "\u3000", "\u200b"])  # no-break, ideographic, zero-width
            return f"1{body[:2]}{sep}{body[2:6]}{sep}{body[6:]}"
        return f"1{body[:2]} {body[2:6]} {body[6:]}"
    region = rng.choice(["GB", "US", "DE", "FR", "JP", "SG", "AU"])
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None
    national = str(example.national_number)
    for _ in range(50):
        cand = national[:-4] + _digits(rng, 4)
        num = phonenumbers.parse(f"+{example.country_code}{cand}")
        if phonenumbers.is_valid_number(num):
            return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def gen_cn_id(rng: random.Random, *, valid: bool = True) -> str:
    region = rng.choice(["110105", "310104", "440305", "320506", "510107", "330106"])
    body = f"{region}{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{_digits(rng, 3)}"
    check = prc_id_check_char(body)
    if not valid:
        return body + rng.choice([c for c in "0123456789X" if c != check])
    number, style = body + check, rng.random()
    if style < 0.15:
        return f"{number[:6]} {number[6:14]} {number[14:]}"  # 6-8-4, as on forms
    if style < 0.3:
        return number.translate(FULL_WIDTH)
    if style < 0.4:
        return gen_cn_id15(rng)
    return number


def gen_cn_id15(rng: random.Random) -> str:
    """A first-generation ID: region, YYMMDD, a 3-digit sequence; no check character."""
    region = rng.choice(["110105", "310104", "440305", "320506"])
    return f"{region}{rng.randint(50, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{_digits(rng, 3)}"


def gen_card(rng: random.Random, *, valid: bool = True) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("62", 16), ("62", 19), ("37", 15)])
    partial = prefix + _digits(rng, length - len(prefix) - 1)
    check = luhn_check_digit(partial)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    number = partial + check
    if length == 16 and rng.random() < 0.5:
        sep = rng.choice([" ", "-", "."])
        return sep.join(number[i:i + 4] for i in range(0, 16, 4))
    if valid and rng.random() < 0.2:
        return f"{number[:6]} {number[6:]}" if length == 19 else number.translate(FULL_WIDTH)
    return number


def gen_iban(rng: random.Random) -> str:
    country, bban = rng.choice([
        ("DE", lambda: _digits(rng, 18)),
        ("GB", lambda: rng.choice(["NWBK", "BARC", "HSBC"]) + _digits(rng, 14)),
        ("FR", lambda: _digits(rng, 23)),
        ("NL", lambda: rng.choice(["ABNA", "INGB", "RABO"]) + _digits(rng, 10)),
    ])
    b = bban()
    iban = country + iban_check_digits(country, b) + b
    if rng.random() < 0.5:
        return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
    return iban


def gen_ip(rng: random.Random) -> str:
    import ipaddress

    if rng.random() < 0.7:
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    addr = ipaddress.IPv6Address(rng.getrandbits(128))
    if rng.random() < 0.5:
        addr = ipaddress.IPv6Address((0xFE80 << 112) | rng.getrandbits(32))
    return addr.compressed


def gen_secret(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return "sk-" + _alnum(rng, 48)
    if kind == 1:
        return "ghp_" + _alnum(rng, 36)
    if kind == 2:
        return "AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    if kind == 3:
        return "ih_" + "".join(rng.choice("0123456789abcdef") for _ in range(16)) + "_" + _alnum(rng, 43)
    if kind == 4:
        return "sk-proj-" + _alnum(rng, 40)
    return _alnum(rng, 32)


def gen_password(rng: random.Random) -> str:
    word = rng.choice(["Hengtai", "Winter", "Qinglan", "Dragon"])
    return word + rng.choice(["#", "!", "@", ""]) + str(rng.randint(2015, 2027)) + rng.choice(["x9", "!", "Ab"])


# Passwords written the way people write them in chat (the value after the keyword is labelled).
PASSWORD_TEMPLATES_EN = ("VPN login fails. user: bob PW: {v} - what should I check?", "password {v}",
                         "Why does `curl -u admin:{v} https://api.example.com/v1/x` return 401?",
                         "mysql --password {v} -h db01 fails", "password＝{v}.")
PASSWORD_TEMPLATES_ZH = ("测试环境 账号 admin 密码 {v}，登录报错 500。", "数据库密碼：{v}，帮我写一封通知邮件",
                         "初始口令 {v} 请尽快修改。", "密码＝{v}。")
# A bare digest-length hex key after its name, and 4-5 character passwords after `=` or `:`.
KEY_TEMPLATES_EN = ("API key {v} was rejected.", "Use access key {v} for the test bucket.")
KEY_TEMPLATES_ZH = ("密钥 {v} 已失效。", "测试环境 API key {v} 调不通")
SHORT_PASSWORD_TEMPLATES_EN = ("The kiosk login is admin, password={v}.", "pwd: {v}")
SHORT_PASSWORD_TEMPLATES_ZH = ("打印机密码：{v}", "门禁 pwd={v}，别外传")


def gen_short_password(rng: random.Random) -> str:
    return rng.choice([_digits(rng, 4), _digits(rng, 6)[:5], "ab" + _digits(rng, 2), "Qx" + _digits(rng, 3)])


def gen_person(rng: random.Random) -> str:
    return rng.choice(NAMES)


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "EMAIL": gen_email, "PHONE": gen_phone, "CN_ID": gen_cn_id, "BANK_CARD": gen_card, "IBAN": gen_iban,
    "IP": gen_ip, "SECRET": gen_secret, "PERSON": gen_person,
}

# {v} is the value; each template reads naturally for its kind.
TEMPLATES_EN: dict[str, Sequence[str]] = {
    "EMAIL": ("Please send the report to {v} before Friday.", "Contact: {v}", "cc {v} on the thread",
              "Reach me at {v}."),
    "PHONE": ("You can call me on {v} after 6pm.", "Mobile: {v}", "The hotline ({v}) is open all day.", "Call {v}."),
    "CN_ID": ("The applicant's ID number is {v}.", "ID: {v}", "Resident ID {v} was verified."),
    "BANK_CARD": ("Charge the card {v} for the deposit.", "Card number: {v}", "Refund to {v}, please."),
    "IBAN": ("Wire the amount to IBAN {v} by Monday.", "Account: {v}", "Our IBAN is {v}."),
    "IP": ("The login came from {v} at night.", "Server address: {v}", "Block {v} on the firewall.", "It was {v}."),
    "SECRET": ("Use the key {v} for the staging API.", "token={v}", "I pasted {v} by mistake."),
    "PERSON": ("{v} approved the request.", "Ask {v} about the budget.", "Meeting with {v} tomorrow."),
}
TEMPLATES_ZH: dict[str, Sequence[str]] = {
    "EMAIL": ("请把报告发到{v}。", "邮箱：{v}。", "联系人邮箱{v}，请尽快回复。", "邮箱{v}请回复"),
    "PHONE": ("我的手机号是{v}，下班后联系。", "电话：{v}。", "客户留的号码{v}无人接听。", "手机{v}转分机"),
    "CN_ID": ("申请人身份证号{v}已核验。", "身份证：{v}。", "请核对证件号码{v}是否正确。"),
    "BANK_CARD": ("退款请打到银行卡{v}。", "卡号：{v}。", "押金从{v}扣除。"),
    "IBAN": ("请汇款至IBAN {v}。", "收款账户：{v}。", "供应商的账号是{v}。"),
    "IP": ("登录来源IP为{v}。", "服务器地址：{v}。", "请在防火墙上封禁{v}。", "IP是{v}的机器"),
    "SECRET": ("测试环境密钥是{v}，请勿外传。", "token={v}；", "不小心把{v}贴到了群里。"),
    "PERSON": ("{v}批准了这个申请。", "请联系{v}确认预算。", "明天和{v}开会。"),
}


def _negatives(rng: random.Random) -> list[tuple[str, str]]:
    """(English template, Chinese template) pairs with a value of a PII-like shape that is not PII."""
    order = "20" + _digits(rng, 14)
    bad_id = gen_cn_id(rng, valid=False)
    bad_card = gen_card(rng, valid=False).replace(" ", "").replace("-", "")
    visa = "4" + _digits(rng, 14)
    visa += luhn_check_digit(visa)
    uuid = f"{_hex(rng, 8)}-{_hex(rng, 4)}-4{_hex(rng, 3)}-a{_hex(rng, 3)}-{_hex(rng, 12)}"
    return [
        (f"Order {order} has shipped.", f"订单号{order}已发货。"),
        (f"Invoice INV-{_digits(rng, 4)}-{_digits(rng, 4)} is due.",
         f"发票编号INV-{_digits(rng, 4)}-{_digits(rng, 4)}。"),
        (f"The number {bad_id} fails the checksum.", f"号码{bad_id}校验失败。"),
        (f"Card-like number {bad_card} is not a card.", f"编号{bad_card}不是卡号。"),
        (f"Due on 2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} at {rng.randint(0, 23):02d}:30:00.",
         f"截止时间2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:30。"),
        (f"It costs ¥{rng.randint(1, 99)},{_digits(rng, 3)}.{_digits(rng, 2)}.",
         f"价格为{rng.randint(10, 9999)}.{_digits(rng, 2)}元。"),
        (f"Release {rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)} is out.",
         f"版本{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}已发布。"),
        (f"Trace id {uuid}.", f"追踪号{uuid}。"),
        (f"Commit {_hex(rng, 40)} fixed it.", f"提交{_hex(rng, 40)}修复了这个问题。"),
        (f"Tracking SF{_digits(rng, 12)} in transit.", f"运单号SF{_digits(rng, 12)}运输中。"),
        (f"Order no. 1{rng.choice('3456789')}{_digits(rng, 9)} was paid.",
         f"订单号1{rng.choice('3456789')}{_digits(rng, 9)}已付款。"),
        (f"Ticket {_digits(rng, 18)} closed.", f"工单{_digits(rng, 18)}已关闭。"),
        # look-alikes of the wider groupings and the spaced password form
        (f"ISBN 978-7-{_digits(rng, 3)}-{_digits(rng, 5)}-{rng.randint(0, 9)}.",
         f"书号ISBN 978-7-{_digits(rng, 3)}-{_digits(rng, 5)}-{rng.randint(0, 9)}。"),
        (f"Site at lng 1{rng.choice('3456789')}{rng.randint(0, 9)}.{_digits(rng, 8)}.",
         f"经度1{rng.choice('3456789')}{rng.randint(0, 9)}.{_digits(rng, 8)}。"),
        (f"Meeting at {rng.randint(10, 12)}:30 in room 1{rng.choice('3456789')}{rng.randint(0, 9)}.",
         f"会议{rng.randint(10, 12)}:30在1{rng.choice('3456789')}{rng.randint(0, 9)}会议室。"),
        (f"Order {_digits(rng, 4)} {_digits(rng, 8)} shipped on 2026.{rng.randint(1, 12):02d}.01.",
         f"订单 {_digits(rng, 4)} {_digits(rng, 8)} 于2026.{rng.randint(1, 12):02d}.01发货。"),
        ("The password reset link expired.", "密码 错误，请重试。"),
        (f"Shipment {gen_cn_id15(rng)} left the depot.", f"订单号{gen_cn_id15(rng)}已发货。"),
        ("Access key rotation is due on Friday; pwd: reset.", "密钥 轮换 周五到期，token: 1h。"),
        (f"The ratio was 0.{visa}.", f"比例为0.{visa}。"),  # a card's digits as decimals
        (f"Use password {rng.choice(['manager', 'policy2024', 'settings'])} page.", "密码 已过期 请修改"),
    ]


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def generate_corpus(n: int, *, seed: int = 0) -> list[Sample]:
    """``n`` sentences (alternating English and Chinese) with 1-3 PII values each, half with a negative."""
    rng = random.Random(seed)
    kinds = list(GENERATORS)
    samples: list[Sample] = []
    for i in range(n):
        lang = "en" if i % 2 == 0 else "zh"
        templates = TEMPLATES_EN if lang == "en" else TEMPLATES_ZH
        joiner = " " if lang == "en" else ""
        text, spans, negatives = "", [], []
        for kind in rng.sample(kinds, rng.randint(1, 3)):
            template = rng.choice(templates[kind])
            value = GENERATORS[kind](rng)
            form = rng.random() if kind == "SECRET" else 1.0
            if form < 0.3:
                template = rng.choice(PASSWORD_TEMPLATES_EN if lang == "en" else PASSWORD_TEMPLATES_ZH)
                value = gen_password(rng)
            elif form < 0.4:
                template = rng.choice(KEY_TEMPLATES_EN if lang == "en" else KEY_TEMPLATES_ZH)
                value = _hex(rng, 32)
            elif form < 0.45:
                template = rng.choice(SHORT_PASSWORD_TEMPLATES_EN if lang == "en" else SHORT_PASSWORD_TEMPLATES_ZH)
                value = gen_short_password(rng)
            before, _, after = template.partition("{v}")
            if text:
                text += joiner
            start = len(text) + len(before)
            text += before + value + after
            spans.append(Span(kind, start, start + len(value), value))
        if rng.random() < 0.5:
            en, zh = rng.choice(_negatives(rng))
            negative = en if lang == "en" else zh
            text += joiner + negative
            negatives.append(negative)
        samples.append(Sample(text, tuple(spans), lang, tuple(negatives)))
    return samples
