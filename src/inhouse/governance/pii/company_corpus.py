"""A generated corpus that looks like what employees paste into a chat: config files, e-mail threads, tickets and
chat logs, in English and Chinese, with every sensitive value labelled.

Each template is text with fields: ``{KIND}`` or ``{KIND:name}`` is a value to redact (the same name gives the
same value within one document), ``{~NEG}`` a look-alike that must stay (public URLs, file names, versions, commit
hashes, settings, placeholders). Kinds beyond those of ``corpus.py``: internal e-mail domains, ``HOST`` (internal
names), ``URL`` (internal URLs, UNC paths), private and loopback ``IP`` addresses, and ``SECRET`` in the shapes
companies leak (``SECRET_PASSWORD`` etc. pick the shape; all are labelled ``SECRET``).
"""

from __future__ import annotations

import base64
import random
import re
import string
from collections.abc import Callable

from inhouse.governance.pii.corpus import NAMES_EN, NAMES_ZH, Sample, Span, gen_card, gen_cn_id, gen_phone

COMPANIES = ("qinglan", "qinglan-components", "hengtai", "acme-cn", "northwind")
INTERNAL_SUFFIXES = ("local", "internal", "corp", "lan", "example", "test", "home.arpa")
DEPTS = ("hr", "fin", "it", "ops", "sales", "rd", "legal")
SERVICES = ("db", "app", "jenkins", "gitlab", "wiki", "jira", "erp", "oa", "nas", "mail", "vpn", "redis", "k8s-master")


def _pick(rng: random.Random, seq: tuple[str, ...] | list[str]) -> str:
    return rng.choice(list(seq))


def _alnum(rng: random.Random, n: int) -> str:
    while True:
        s = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))
        if any(c.isupper() for c in s) and any(c.islower() for c in s) and any(c.isdigit() for c in s):
            return s


def _domain(rng: random.Random) -> str:
    company = _pick(rng, COMPANIES)
    suffix = _pick(rng, INTERNAL_SUFFIXES)
    return f"{_pick(rng, DEPTS)}.{company}.{suffix}" if rng.random() < 0.5 else f"{company}.{suffix}"


def gen_internal_email(rng: random.Random) -> str:
    user = _pick(rng, ("zhang.wei", "li.na", "wang.fang", "ops", "it-helpdesk", "j.smith", "chen_jing", "admin"))
    return f"{user}@{_domain(rng)}"


def gen_public_email(rng: random.Random) -> str:
    user = _pick(rng, ("sales", "support", "liu.yang", "m.gonzalez", "ceo", "billing"))
    return f"{user}{rng.randint(1, 99)}@{_pick(rng, ('gmail.com', '163.com', 'qq.com', 'outlook.com', 'partner.de'))}"


def gen_host(rng: random.Random) -> str:
    return f"{_pick(rng, SERVICES)}{rng.randint(1, 12):02d}.{_domain(rng)}"


def gen_private_ipv4(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.4:
        return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if r < 0.75:
        return f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    return f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def gen_private_ip(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.35:
        return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if r < 0.65:
        return f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if r < 0.85:
        return f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if r < 0.93:
        return "127.0.0.1"
    return f"fd{rng.randint(0, 255):02x}:{rng.randint(1, 0xffff):x}::{rng.randint(1, 0xffff):x}"


def gen_internal_url(rng: random.Random) -> str:
    r = rng.random()
    path = _pick(rng, ("/browse/OPS-" + str(rng.randint(10, 9999)), "/pages/viewpage.action?pageId=" +
                       str(rng.randint(10_000, 99_999)), "/api/v1/orders", "/admin", "/grafana/d/x1", "/"))
    if r < 0.5:
        return f"https://{gen_host(rng)}{path}"
    if r < 0.75:
        return f"http://{gen_private_ipv4(rng)}:{rng.randint(1024, 9999)}{path}"
    if r < 0.9:
        return f"http://{_pick(rng, ('wiki', 'jira', 'intranet', 'gitlab'))}{path}"
    return "\\\\" + f"fs{rng.randint(1, 9):02d}\\{_pick(rng, DEPTS)}\\2026\\Q{rng.randint(1, 4)}"


def gen_password(rng: random.Random) -> str:
    word = _pick(rng, ("Qinglan", "Winter", "Spring", "Admin", "Hengtai", "Passw0rd", "Dragon"))
    return word + _pick(rng, ("@", "#", "!", "_", "")) + str(rng.randint(2015, 2027)) + _pick(rng, ("", "!", "x9"))


def gen_connection(rng: random.Random) -> str:
    scheme, port, db = rng.choice([("postgres", 5432, "erp"), ("mysql", 3306, "oa"), ("mongodb", 27017, "crm"),
                                   ("redis", 6379, "0"), ("amqp", 5672, "vhost")])
    user = _pick(rng, ("app", "svc_erp", "root", "readonly"))
    return f"{scheme}://{user}:{gen_password(rng)}@{gen_host(rng)}:{port}/{db}"


def gen_private_key(rng: random.Random) -> str:
    kind = _pick(rng, ("RSA ", "EC ", "OPENSSH ", ""))
    body = "\n".join(base64.b64encode(rng.randbytes(48)).decode() for _ in range(rng.randint(2, 5)))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"


def gen_cloud_key(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.4:
        return "AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    if r < 0.7:
        return "LTAI" + _alnum(rng, 20)
    return "AIza" + "".join(rng.choice(string.ascii_letters + string.digits + "_-") for _ in range(35))


def gen_api_token(rng: random.Random) -> str:
    return _pick(rng, ["sk-proj-" + _alnum(rng, 40), "ghp_" + _alnum(rng, 36), "glpat-" + _alnum(rng, 20),
                       "xoxb-" + str(rng.randint(10**11, 10**12)) + "-" + _alnum(rng, 24), "hf_" + _alnum(rng, 34),
                       "ih_" + "".join(rng.choice("0123456789abcdef") for _ in range(16)) + "_" + _alnum(rng, 43)])


def gen_jwt(rng: random.Random) -> str:
    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    head = part(b'{"alg":"HS256","typ":"JWT"}')
    claims = part(f'{{"sub":"{rng.randint(1, 10**6)}","exp":{rng.randint(1_700_000_000, 1_900_000_000)}}}'.encode())
    return f"{head}.{claims}.{part(rng.randbytes(32))}"


def gen_random_secret(rng: random.Random) -> str:
    return _alnum(rng, rng.choice((32, 40, 48)))


VALUES: dict[str, Callable[[random.Random], str]] = {
    "EMAIL": gen_internal_email, "PUBLIC_EMAIL": gen_public_email, "HOST": gen_host, "IP": gen_private_ip,
    "URL": gen_internal_url, "PHONE": gen_phone, "CN_ID": gen_cn_id, "BANK_CARD": gen_card,
    "PERSON_EN": lambda rng: _pick(rng, NAMES_EN), "PERSON_ZH": lambda rng: _pick(rng, NAMES_ZH),
    "SECRET_PASSWORD": gen_password, "SECRET_CONN": gen_connection, "SECRET_PEM": gen_private_key,
    "SECRET_CLOUD": gen_cloud_key, "SECRET_TOKEN": gen_api_token, "SECRET_JWT": gen_jwt,
    "SECRET_RANDOM": gen_random_secret,
}
# Field name → labelled kind (PUBLIC_EMAIL is an address all the same; the PERSON_* and SECRET_* shapes fold).
KIND_OF = {"PUBLIC_EMAIL": "EMAIL", "PERSON_EN": "PERSON", "PERSON_ZH": "PERSON"}

NEGATIVES: dict[str, Callable[[random.Random], str]] = {
    "PUBLIC_URL": lambda rng: _pick(rng, ("https://docs.python.org/3/library/sqlite3.html",
                                          "https://github.com/encode/httpx/issues/" + str(rng.randint(100, 3000)),
                                          "https://pypi.org/project/fastapi/", "https://www.example.com/pricing",
                                          "https://mirrors.aliyun.com/pypi/simple/")),
    "VERSION": lambda rng: f"{rng.randint(1, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 20)}",
    "COMMIT": lambda rng: "".join(rng.choice("0123456789abcdef") for _ in range(40)),
    "UUID": lambda rng: "-".join("".join(rng.choice("0123456789abcdef") for _ in range(n)) for n in (8, 4, 4, 4, 12)),
    "FILE": lambda rng: _pick(rng, ("config.py", "README.md", "docker-compose.yml", "icon@2x.png", "main.go",
                                    "report_2026Q3.xlsx", "settings.toml")),
    "PACKAGE": lambda rng: _pick(rng, ("lodash@4.17.21", "react@18.2.0", "fastapi==0.115.0", "numpy>=1.26")),
    "TICKET": lambda rng: f"{_pick(rng, ('OPS', 'ERP', 'HR', 'SEC'))}-{rng.randint(10, 9999)}",
    "ORDER": lambda rng: "SO" + "".join(rng.choice(string.digits) for _ in range(12)),
    "TIME": lambda rng: f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:"
                        f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
    "PUBLIC_HOST": lambda rng: _pick(rng, ("github.com", "registry.npmjs.org", "api.openai.com", "www.baidu.com")),
    "SETTING": lambda rng: _pick(rng, ("max_tokens: 4096", "auth: required", "token_ttl_s: 3600",
                                       "password_min_length: 12", "timeout: 30s", "retries: 3")),
    "PLACEHOLDER": lambda rng: _pick(rng, ("password: ${DB_PASSWORD}", "api_key: <your-key-here>",
                                           "secret: ********", "token: {{ vault_token }}")),
}

TEMPLATES: tuple[str, ...] = (
    # .env / config files
    "# {~FILE}\nDATABASE_URL={SECRET_CONN}\nREDIS_HOST={HOST}\nAPI_BASE={URL}\nSMTP_USER={EMAIL}\n"
    "SMTP_PASSWORD={SECRET_PASSWORD}\n{~SETTING}\n# docs: {~PUBLIC_URL}\n",
    "database:\n  host: {HOST}\n  port: 5432\n  user: app\n  password: \"{SECRET_PASSWORD}\"\n"
    "cache:\n  url: redis://{IP}:6379/0\n{~SETTING}\n# see {~TICKET}, built from {~COMMIT}\n",
    '{\n  "service": "erp-sync",\n  "endpoint": "{URL}",\n  "aws_access_key_id": "{SECRET_CLOUD}",\n'
    '  "aws_secret_access_key": "{SECRET_RANDOM}",\n  "owner": "{EMAIL}",\n  "version": "{~VERSION}"\n}\n',
    "[ldap]\nserver = ldaps://{HOST}:636\nbind_dn = cn=svc,dc=corp\nbind_password = {SECRET_PASSWORD}\n"
    "[deploy]\ntoken = {SECRET_TOKEN}\n{~PLACEHOLDER}\n",
    "Why does the app not start? My config:\n```\nspring.datasource.url=jdbc:mysql://{HOST}:3306/oa\n"
    "spring.datasource.password={SECRET_PASSWORD}\nserver.port=8080\n```\nIt uses {~PACKAGE} and {~FILE}.",
    "kubectl logs fails from {IP}: \n{SECRET_PEM}\nI pasted our deploy key above, is the format right? ({~UUID})",
    "curl -H 'Authorization: Bearer {SECRET_JWT}' {URL}\nreturns 401 since {~TIME}. {~PUBLIC_URL} says the "
    "token expired?",
    "这是我们的配置，帮我看看哪里错了：\nDB_HOST={HOST}\nDB_PASSWORD={SECRET_PASSWORD}\nALIYUN_KEY={SECRET_CLOUD}\n"
    "版本 {~VERSION}，工单 {~TICKET}",
    "数据库连接串是 {SECRET_CONN}，部署在 {IP} 上，文档见 {URL}。",
    # e-mail threads
    "From: {PERSON_EN:a} <{EMAIL:a}>\nTo: {PERSON_EN:b} <{EMAIL:b}>\nCc: {PUBLIC_EMAIL}\nSubject: Re: outage on "
    "{HOST:h}\n\nHi,\n\n{HOST:h} ({IP}) was down from {~TIME}. Logs are on {URL}. Call me on {PHONE} if it "
    "happens again.\n\nBest,\n{PERSON_EN:a}\n\n> On {~TIME}, {PERSON_EN:b} wrote:\n> Is {~PUBLIC_HOST} "
    "reachable from {HOST:h}?",
    "From: {EMAIL:a}\nTo: {EMAIL:b}\nSubject: temporary VPN access\n\nYour temporary password is "
    "{SECRET_PASSWORD}; please change it at {URL} after first login. Release notes: {~PUBLIC_URL}",
    "发件人：{PERSON_ZH:a} <{EMAIL:a}>\n收件人：{EMAIL:b}\n主题：回复：报销\n\n{PERSON_ZH:b}你好，\n\n"
    "报销款已打到你的银行卡{BANK_CARD}，身份证号{CN_ID}已核验。有问题打我手机{PHONE}。\n共享盘：{URL}\n\n{PERSON_ZH:a}",
    "邮件：{PERSON_ZH}（{EMAIL}）说 {HOST} 的证书过期了，订单 {~ORDER} 同步失败，时间 {~TIME}。",
    # tickets
    "[{~TICKET}] Login fails for {EMAIL}\nEnvironment: {HOST} / {IP}\nSteps: open {URL}, sign in.\n"
    "Expected: dashboard. Actual: 500.\nStack: File \"/srv/app/{~FILE}\", line 42\nCommit {~COMMIT}, trace "
    "{~UUID}.",
    "[{~TICKET}] Refund request\nCustomer {PERSON_EN} ({PUBLIC_EMAIL}, {PHONE}) asks for a refund of order "
    "{~ORDER} to card {BANK_CARD}. Internal note: see {URL}.",
    "[{~TICKET}] CI broken\nThe pipeline at {URL} fails: the GitLab token {SECRET_TOKEN} was revoked. Runner on "
    "{HOST}, image {~PACKAGE}.",
    "【工单 {~TICKET}】{PERSON_ZH}反馈 {URL} 打不开\n环境：{HOST}（{IP}）\n联系方式：{PHONE}，{EMAIL}\n"
    "备注：版本 {~VERSION}，时间 {~TIME}。",
    "【工单 {~TICKET}】钉钉机器人不再推送\nwebhook: https://oapi.dingtalk.com/robot/send?access_token="
    "{SECRET_RANDOM}\n服务器 {IP}。",
    # chat logs
    "[{~TIME}] {PERSON_ZH:a}: 谁有 {HOST} 的 root 密码？\n[{~TIME}] {PERSON_ZH:b}: 密码是 {SECRET_PASSWORD}，"
    "用完改掉\n[{~TIME}] {PERSON_ZH:a}: 好的，我在 {IP} 上操作",
    "[{~TIME}] {PERSON_EN:a}: can you summarise this thread for the customer?\n[{~TIME}] {PERSON_EN:b}: sure, "
    "the staging box is {HOST}, ping {EMAIL} if {~PUBLIC_HOST} rate-limits us again. {~SETTING}",
    "[{~TIME}] {PERSON_ZH:a}: 测试环境 账号 admin 密码 {SECRET_PASSWORD}，登录报错 500\n[{~TIME}] {PERSON_ZH:b}: "
    "用 curl -u admin:{SECRET_PASSWORD} {URL} 试试，手机 {PHONE} 找我，版本 {~VERSION}",
    "Summarise: our partner contact is {PUBLIC_EMAIL}, the SFTP is sftp://{HOST}/upload and the shared folder "
    "{URL}. Do not mention {~FILE}.",
)
_FIELD = re.compile(r"\{(~?)([A-Z_]+)(?::([a-z]))?\}")


def render(template: str, rng: random.Random) -> Sample:
    """One document from ``template`` with its labelled spans."""
    text, spans, negatives = "", [], []
    named: dict[tuple[str, str], str] = {}
    pos = 0
    for m in _FIELD.finditer(template):
        text += template[pos:m.start()]
        pos = m.end()
        neg, field, name = m.group(1), m.group(2), m.group(3)
        if neg:
            value = NEGATIVES[field](rng)
            negatives.append(value)
            text += value
            continue
        key = (field, name)
        if name and key in named:
            value = named[key]
        else:
            value = VALUES[field](rng)
            if name:
                named[key] = value
        kind = "SECRET" if field.startswith("SECRET_") else KIND_OF.get(field, field)
        spans.append(Span(kind, len(text), len(text) + len(value), value))
        text += value
    text += template[pos:]
    lang = "zh" if re.search(r"[\u4e00-\u9fff]", template) else "en"
    return Sample(text, tuple(spans), lang, tuple(negatives))


def generate_company_corpus(n: int, *, seed: int = 0) -> list[Sample]:
    """``n`` documents: every template in turn, with fresh values (and the same seed, the same corpus)."""
    rng = random.Random(seed)
    return [render(TEMPLATES[i % len(TEMPLATES)], rng) for i in range(n)]
