"""Secret detectors: what a credential looks like in prompts, config files, tickets and chat logs.

Each detector has a name (the kind of secret an audit record names: ``password``, ``private_key``…, never the
value), patterns and an optional validator. ``recognizers.py`` turns each into a Presidio recogniser of the
entity ``SECRET`` named ``inhouse_secret_<name>``. Pure regular expressions here; no Presidio.

Why our own patterns and not a secrets scanner from PyPI: we tried ``detect-secrets`` 1.5.0 (Yelp; its last
release is May 2024). It is offline, but it scans source *lines*: it reports values without offsets (and some
only partly: ``ghp`` for a GitHub token), needs quotes around values for its keyword detector (``password:
Winter2026!corp`` in prose is not found), knows no Chinese keywords and, in ad-hoc mode, flags every word as a
high-entropy string. A false positive here refuses the whole request, so precision matters as much as recall.
See docs/governance.md for the evaluation.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

# A match → True (certainly a secret), False (not one), None (keep the pattern's own score).
MatchValidator = Callable[["re.Match[str]"], "bool | None"]

_NOT_TOKEN_BEFORE = r"(?<![A-Za-z0-9_/+-])"
_NOT_TOKEN_AFTER = r"(?![A-Za-z0-9_-])"


@dataclass(frozen=True)
class SecretDetector:
    name: str
    patterns: tuple[tuple[str, float], ...]
    validate: MatchValidator | None = None
    validated_score: float = 0.85


def shannon_bits(value: str) -> float:
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def looks_random(value: str) -> bool:
    """A long token mixing upper case, lower case and digits with high entropy: a key, not a word."""
    classes = (any(c.isupper() for c in value), any(c.islower() for c in value), any(c.isdigit() for c in value))
    return all(classes) and shannon_bits(value) >= 4.0


def _token(*alternatives: str) -> str:
    return _NOT_TOKEN_BEFORE + "(?:" + "|".join(alternatives) + ")" + _NOT_TOKEN_AFTER


# Keys issued by cloud providers and SaaS vendors, recognisable by their fixed prefix.
_PROVIDER_KEYS = (
    r"sk-(?:proj-|ant-(?:api\d\d-)?|live-|svcacct-)?[A-Za-z0-9_-]{20,}",  # OpenAI, Anthropic and look-alikes
    r"gh[pousr]_[A-Za-z0-9]{30,}", r"github_pat_[A-Za-z0-9_]{22,}",  # GitHub
    r"glpat-[A-Za-z0-9_-]{20,}",  # GitLab
    r"xox[abprs]-[A-Za-z0-9-]{10,}",  # Slack
    r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe
    r"hf_[A-Za-z0-9]{30,}",  # Hugging Face
    r"npm_[A-Za-z0-9]{36}",  # npm
    r"pypi-AgE[A-Za-z0-9_-]{50,}",  # PyPI
    r"SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}",  # SendGrid
    r"\d{8,10}:AA[A-Za-z0-9_-]{33}",  # Telegram bot
)
# Cloud access keys: AWS (and STS), Google, Alibaba Cloud, Tencent Cloud, Google OAuth access tokens.
_CLOUD_KEYS = (
    r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}",
    r"AIza[0-9A-Za-z_-]{35}",
    r"LTAI[A-Za-z0-9]{12,28}",
    r"AKID[A-Za-z0-9]{13,40}",
    r"ya29\.[0-9A-Za-z_-]{20,}",
)
# Incoming-webhook URLs carry their credential in the path or query.
_WEBHOOKS = (
    r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+",
    r"https://(?:oapi\.dingtalk\.com|open\.feishu\.cn|open\.larksuite\.com|qyapi\.weixin\.qq\.com)/[^\s\"'<>]+",
    r"https://[A-Za-z0-9.-]+\.webhook\.office\.com/[^\s\"'<>]+",
)
_PEM = (r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
        r".*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)")  # a key pasted without its end goes too
# Up to the MAC, but not past the next file's header: each header scanning to the end made the scan quadratic.
_PUTTY = r"PuTTY-User-Key-File-\d: (?:(?!PuTTY-User-Key-File-).)*?Private-MAC: [0-9a-f]+"
_JWT = _NOT_TOKEN_BEFORE + r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}" + _NOT_TOKEN_AFTER
# scheme://user:password@host… — the whole string goes (the host is as telling as the password).
_CONNECTION = (r"(?<![A-Za-z0-9+.-])(?i:[a-z][a-z0-9+.-]{1,30})://[^\s:/@'\"<>]*:[^\s@/'\"<>]+@"
               r"[^\s/'\"<>?#]+(?:[/?#][^\s'\"<>]*)?")
# key = value / key: value / "key": "value" / 密码是…: the value is the secret.
# Each as (Latin words, Chinese words): a Latin word is part of a key's run of letters, a Chinese one follows it.
_PASSWORD_WORDS = (r"pass(?:word|wd|phrase)?|pwd|(?<![A-Za-z])pw(?![A-Za-z])", r"密码|密碼|口令|口令码")
_KEY_WORDS = (r"secret|token|api[_-]?key|apikey|access[_-]?key|account[_-]?key|shared[_-]?access[_-]?key|"
              r"private[_-]?key|credentials?|auth", r"密钥|秘钥|密鑰|秘鑰|令牌")


_VALUE = r"[^\s,;，。；'\"&<>`)\]}]"  # a value's characters: up to a space or punctuation that ends it
_VALUE_LATIN = r"[^\s,;，。；'\"&<>`)\]}\u3400-\u9fff]"  # the same without CJK


def _assigned(words: tuple[str, str]) -> str:
    # The key: a whole run of key characters holding a Latin word (`db_password`), or a Chinese word with the run
    # before it (if a value did not end it: `ab12密码`) and after it (`db密码`). No separator can follow a key
    # character, so a key ends where its run does: it starts only where a run starts, and the first word found in
    # the run decides (`(?>…)`, `*+`). Trying every start and every word of a run again made the scan quadratic
    # (a 20 KB run of "_" took 29 s).
    # The value: a run of Latin letters, digits and symbols with a digit in it, directly followed by Chinese, ends
    # there ("打印机密码：ab20申请人…": the prose goes on); any other value may hold Chinese ("密码：张三丰@1988").
    # `is`/`was` take their spaces from the `\s*` around them: `\s*\s+` in a row is quadratic on a run of spaces.
    latin, chinese = words
    return (r"(?i:(?P<k>(?<![A-Za-z0-9_.-])(?>[A-Za-z0-9_.-]*?(?:" + latin + r")(?!s\b))[A-Za-z0-9_.-]*+"
            r"|(?:(?<![A-Za-z0-9_.-])[A-Za-z0-9_.-]*+)?(?:" + chinese + r")(?!s\b)[A-Za-z0-9_.-]*+))"
            r"[\"']?\s*(?P<s>[:=：]|=>|(?<=\s)(?:is|was)(?=\s)|是|为)\s*[\"']?"
            rf"(?P<v>(?={_VALUE_LATIN}*\d){_VALUE_LATIN}{{4,}}(?=[\u3400-\u9fff])|{_VALUE}{{4,}})")


# "密码 Hengtai#2025x9", "password Winter2026!": a keyword, a space, and a value only a credential looks like.
_SPACED = (r"(?i:(?<![A-Za-z])(?:password|passwd|pwd|pw)(?![A-Za-z])|密码|密碼|口令)[ \t]+"
           r"(?P<v>[^\s,;，。；'\"&<>`)\]}]{8,})")
# "API key 9f86d081884c7d659a2feaa0c55ad015": a key word, a space and a value no word looks like (hex of a digest's
# length, or random letters and digits); "access key rotation" is prose.
_SPACED_KEY = (r"(?i:(?<![A-Za-z])(?:api|access|secret|private|app)[ _-]?key(?![A-Za-z])|client[ _-]?secret|"
               r"密钥|秘钥|密鑰|秘鑰)[ \t]+(?P<v>[A-Za-z0-9_+/=-]{20,})(?![A-Za-z0-9_+/=-])")
# curl -u user:password (curl's only way to take a password on the command line), --password value. From the last
# `curl` before the `-u`: each `curl` of a line scanning to its end made the scan quadratic.
_CLI = (r"(?i:\bcurl\b(?:(?!\bcurl\b)[^\n])*?)\s(?:-u|--user)(?:\s+|=)['\"]?[^\s:'\"]*:(?P<v>[^\s'\"]+)",
        r"(?<![A-Za-z0-9_-])--pass(?:word)?(?:\s+|=)['\"]?(?P<v>[^\s'\"]+)")
_BEARER = r"(?i:\b(?:bearer|token)\s+)(?P<v>[A-Za-z0-9._~+/-]{16,}=*)"
_BASIC = r"(?i:\bbasic\s+)(?P<v>[A-Za-z0-9+/]{12,}={0,2})"
_SAS = r"[?&](?i:sig|signature|x-amz-signature|access_token|api_key|apikey|key|token)=(?P<v>[A-Za-z0-9%+/=._-]{16,})"
_ENTROPY = r"(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+/_=-]{24,}(?![A-Za-z0-9+/_=-])"

# Values of ``key = value`` that are not secrets: placeholders, references to elsewhere, switches.
_NOT_A_VALUE = re.compile(
    r"(?i)(?:true|false|null|none|nil|yes|no|on|off|required|optional|string|example|bearer|basic|digest|"
    r"redacted|hidden|masked|unset|empty|undefined|\*+|x{3,}|\.{3,}|-+|<[^>]*>?|\$\{?[A-Za-z_][\w.]*\}?.*|"
    r"\{\{.*|%\(.*|env\(.*|os\.environ.*|process\.env.*|vault:.*|secret(?:s)?manager.*)"
)
_PASSWORD_KEY = re.compile("|".join(_PASSWORD_WORDS), re.IGNORECASE)


def assigned_value_ok(key: str, value: str, separator: str = "=") -> bool:
    """A value assigned to a secret-sounding key is a secret unless it is a placeholder or a plain word."""
    value = value.strip("\"'").rstrip(".")  # "pwd: reset." ends a sentence
    if len(value) < 4 or _NOT_A_VALUE.fullmatch(value):
        return False
    if len(value) < 6:
        # A short password or PIN (`password=ab12`, `pwd: 4821`) after an explicit `=` or `:`; a value without a digit
        # (`password: reset.`) and any short value of another key (`token: 1h`) are not credentials.
        return (bool(_PASSWORD_KEY.search(key)) and separator.strip() in ("=", ":", "：", "=>")
                and any(c.isdigit() for c in value))
    if separator.strip() not in ("=", ":", "：", "=>") and (value.isalpha() and (value.islower() or value.istitle())):
        return False  # prose: "the password is incorrect", "密码是 错误" — a credential has digits, symbols or CaSe
    if value.isdigit():
        return bool(_PASSWORD_KEY.search(key))  # a numeric password, but `max_tokens: 100000` is a setting
    # `auth: required`, `token: expired`: words, not credentials
    return not (value.isalpha() and value.islower() and not _PASSWORD_KEY.search(key))


def _value(m: re.Match[str]) -> str:
    return m.group("v") if "v" in m.re.groupindex else m.group(0)


def _assigned_ok(m: re.Match[str]) -> bool:
    return assigned_value_ok(m.group("k"), m.group("v"), m.group("s"))


def _basic_ok(m: re.Match[str]) -> bool:
    value = _value(m)
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded


def credential_shaped(value: str) -> bool:
    """Letters and digits and three of: upper case, lower case, digits, symbols; 8 characters or more. What a
    password after a bare space must look like ("password reset", "密码 错误" are prose)."""
    if len(value) < 8 or _NOT_A_VALUE.fullmatch(value):
        return False
    classes = (any(c.isupper() for c in value), any(c.islower() for c in value), any(c.isdigit() for c in value),
               any(not c.isalnum() for c in value))
    return any(c.isalpha() for c in value) and classes[2] and sum(classes) >= 3


def _password_ok(m: re.Match[str]) -> bool:
    if "k" in m.re.groupindex:
        return _assigned_ok(m)
    if m.re.pattern == _SPACED:
        return credential_shaped(_value(m))
    return not _NOT_A_VALUE.fullmatch(_value(m))  # curl -u, --password: a password whatever it looks like


def _key_ok(m: re.Match[str]) -> bool:
    if "k" in m.re.groupindex:
        return _assigned_ok(m)
    value = _value(m)
    is_hex = len(value) in (32, 40, 64) and all(c in "0123456789abcdefABCDEF" for c in value)
    return (is_hex and any(c.isdigit() for c in value) and any(c.isalpha() for c in value)) or looks_random(value)


def _bearer_ok(m: re.Match[str]) -> bool:
    value = _value(m)
    return any(c.isdigit() for c in value) or (any(c.isupper() for c in value) and any(c.islower() for c in value))


# The detectors, most specific first (a finding's score decides overlaps: see Redactor.analyze).
DETECTORS: tuple[SecretDetector, ...] = (
    SecretDetector("private_key", ((_PEM, 1.0), (_PUTTY, 1.0))),
    SecretDetector("inhouse_key", ((_token(r"ih_[0-9a-f]{16}_[A-Za-z0-9_-]{32,128}"), 1.0),)),
    SecretDetector("connection_string", ((_CONNECTION, 1.0),)),  # beats the e-mail inside it
    SecretDetector("webhook_url", ((_token(*_WEBHOOKS), 0.97),)),
    SecretDetector("cloud_key", ((_token(*_CLOUD_KEYS), 0.96),)),
    SecretDetector("api_token", ((_token(*_PROVIDER_KEYS), 0.95),)),
    SecretDetector("jwt", ((_JWT, 0.95),)),
    SecretDetector("password", ((_assigned(_PASSWORD_WORDS), 0.3), (_SPACED, 0.3), *((p, 0.3) for p in _CLI)),
                   validate=_password_ok),
    SecretDetector("assigned_key", ((_assigned(_KEY_WORDS), 0.3), (_SPACED_KEY, 0.3)), validate=_key_ok),
    SecretDetector("bearer_token", ((_BEARER, 0.3),), validate=_bearer_ok),
    SecretDetector("basic_auth", ((_BASIC, 0.3),), validate=_basic_ok),
    SecretDetector("url_credential", ((_SAS, 0.85),)),
    SecretDetector("high_entropy", ((_ENTROPY, 0.3),), validate=lambda m: looks_random(m.group(0)),
                   validated_score=0.8),
)
SECRET_KINDS = tuple(d.name for d in DETECTORS)
