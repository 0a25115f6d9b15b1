"""The PII and secret scan costs time linear in the prompt: no recogniser may be quadratic on a hostile run.

The scan runs before anything else on every request to a provider, and a regex holds the GIL: a 20 KB run of
``_`` once took 29 s in ``credentials._assigned`` (and 103 s over HTTP), stalling every other request. Each
recogniser reads runs of 2,500 and 20,000 characters; linear time grows 8×, quadratic 64×. A growth above 24×
fails, unless the long run still takes under 20 ms (timer noise on tiny times). Times are the thread's CPU time,
which other processes on a busy machine do not inflate. Runs under ``deny_external_connections`` like the other
PII tests.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from inhouse.governance.pii.corpus import NAMES
from inhouse.governance.pii.credentials import DETECTORS
from inhouse.governance.pii.redact import Redactor
from inhouse.testing.network_guard import deny_external_connections

SHORT, LONG = 2_500, 20_000
MAX_GROWTH = 24.0
NOISE_S = 0.02

# Runs of one shape: the reviewer's (word characters, digits, letters, separators, escapes, CJK) and the starts of
# the patterns that scanned to the end of the text from each (a key word, `curl`, a PuTTY header, `password is`);
# a head before a run: a key word followed by a run of spaces, which `\s*\s+is` split every way.
SHAPES = {
    "underscores": "_", "letters": "a", "digits": "1", "at-signs": "a@", "percent-40": "%40", "spaces": " ",
    "digit-dash": "1-", "letter-dot": "a.", "cjk": "张", "cjk-latin": "张a1", "mixed": "aB3_.-", "kelvin": "a\u212a",
    "key-words": "password", "key-colon": "token:", "password-is": "password is ", "chinese-key": "db密码",
    "curl": "curl ", "putty": "PuTTY-User-Key-File-2: ", "colons": "a:", "password-then-spaces": "password|| ",
    "password-is-then-spaces": "password is|| ", "token-then-tabs": "token\t|| \t",
}
# Prompts of thousands of values: findings must not be compared with every other finding.
MANY = {"emails": "a@b.co ", "ips": "10.0.0.1 ", "passwords": "password=ab12cd ", "hosts": "a.local "}
# Runs that spaCy's English tokenizer split a character at a time (3 s for 4 KB of "'"); the whole scan reads them.
PUNCTUATION = {"underscores": "_", "parentheses": ")", "quotes": "'", "bangs": "!", "questions": "?"}


def run_of(shape: str, n: int) -> str:
    head, _, run = shape.rpartition("||")  # "head||run": the head once, then the run
    return head + (run * (n // len(run) + 1))[:n]


def seconds(scan: Callable[[str], Any], shape: str, n: int, repeat: int) -> float:
    best = float("inf")
    for i in range(repeat):
        text = run_of(shape, n + i)  # a new text each time: spaCy's tokenizer caches what it has split
        start = time.thread_time()
        scan(text)
        best = min(best, time.thread_time() - start)
    return best


def growth_ok(scan: Callable[[str], Any], shape: str) -> tuple[bool, str]:
    short = seconds(scan, shape, SHORT, repeat=3)
    long = seconds(scan, shape, LONG, repeat=1)
    if long > NOISE_S and long > MAX_GROWTH * short:
        long = min(long, seconds(scan, shape, LONG + 1, repeat=2))  # a busy machine, or really slower?
    return long <= NOISE_S or long <= MAX_GROWTH * short, f"{short * 1000:.1f} ms → {long * 1000:.1f} ms"


@pytest.fixture(scope="module")
def redactor() -> Iterator[Redactor]:
    with deny_external_connections() as attempts:
        r = Redactor(names=NAMES)
        r.warm_up()
        yield r
    assert attempts == []


@pytest.fixture(scope="module")
def recognisers(redactor: Redactor) -> list[Any]:
    return list(redactor._analyzer().registry.recognizers)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_each_recogniser_is_linear_on_a_hostile_run(recognisers: list[Any], shape: str) -> None:
    slow = []
    for rec in recognisers:
        ok, how = growth_ok(lambda t, rec=rec: rec.analyze(t, rec.supported_entities, None), shape)
        if not ok:
            slow.append(f"{rec.name}: {how}")
    assert slow == []


@pytest.mark.parametrize("shape", MANY.values(), ids=MANY.keys())
def test_a_prompt_of_thousands_of_values_is_scanned_in_linear_time(redactor: Redactor, shape: str) -> None:
    ok, how = growth_ok(redactor.analyze, shape)
    assert ok, how


@pytest.mark.parametrize("shape", PUNCTUATION.values(), ids=PUNCTUATION.keys())
def test_the_whole_scan_is_linear_on_a_run_of_punctuation(redactor: Redactor, shape: str) -> None:
    ok, how = growth_ok(redactor.analyze, shape)
    assert ok, how


def test_a_hostile_run_gets_the_same_answer_fast(redactor: Redactor) -> None:
    # The reviewer's request: 20,000 underscores, then a secret the scan must still find after them.
    start = time.thread_time()
    findings = redactor.analyze("_" * 20_000 + " db_password: Winter2026!x")
    assert time.thread_time() - start < 5.0  # 29 s in the regex and 56 s in the tokenizer before, ~20 ms after
    assert [(f.kind, f.detail) for f in findings] == [("SECRET", "password")]


@pytest.mark.parametrize(("text", "key", "value"), [
    ("db_password: Winter2026!", "db_password", "Winter2026!"),
    ("secrets.password=Zx81abcd", "secrets.password", "Zx81abcd"),  # "secrets" is no key word, "password" is
    ("token密码：Zx81abcd", "token密码", "Zx81abcd"),  # a Latin run, then the Chinese word
    ("密码：ab20申请人 口令：Qx77hhhh", "密码", "ab20"),
    ("密钥=ab12cdef密码=Qx77hhhh", "密钥", "ab12cdef"),  # the value ends at Chinese; the next key starts there
    ("the password  is  Winter2026!", "password", "Winter2026!"),
    ("curl https://a curl -u admin:Pa55word https://b", None, "Pa55word"),
])
def test_rewritten_keys_find_what_they_found(text: str, key: str | None, value: str) -> None:
    found = []
    for detector in DETECTORS:
        if detector.name not in ("password", "assigned_key"):
            continue
        for pattern, _ in detector.patterns:
            for m in re.finditer(pattern, text, re.DOTALL | re.MULTILINE):
                found.append((m.group("k") if "k" in m.re.groupindex else None, m.group("v")))
    assert (key, value) in found
