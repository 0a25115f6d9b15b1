"""Presidio recognisers for the PII kinds we redact, and the analyzer that runs them with no NER model.

The only module importing Presidio (analyzer and anonymizer), ``spacy`` and ``tldextract`` (and, with the
corpus generator, ``phonenumbers``); ``pii.py`` imports it lazily so that ``inhouse --help`` stays instant.

* The NLP engine is a **blank** spaCy pipeline (``spacy.blank("en")``) with a whitespace tokenizer, no model
  download, no NER. Every recogniser here is pattern-based and validated, so none needs one.
* Python's ``\\b`` treats CJK characters as word characters, so ``邮箱alice@example.com`` has no word
  boundary before ``alice``. Patterns therefore use explicit ASCII look-arounds instead of ``\\b``.
* Shapes are checked by check digits where the format has them (PRC ID: ISO 7064 MOD 11-2, cards: Luhn,
  IBAN: mod 97), so order numbers and invoice ids of the same length are not redacted.
* ``tldextract`` (used to validate e-mail domains) would fetch the public-suffix list over the network
  the first time; our extractor is built with no URLs and no cache, so it only ever reads the snapshot
  shipped inside the package.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import phonenumbers
import spacy
import tldextract
from presidio_analyzer import AnalyzerEngine, EntityRecognizer, LocalRecognizer, RecognizerResult
from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import EmailRecognizer
from presidio_analyzer.recognizer_registry import RecognizerRegistry
from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig
from presidio_anonymizer.entities import RecognizerResult as AnonymizerResult

from inhouse.governance.pii.addresses import InternalNames, email_domain_ok, host_pattern, url_pattern
from inhouse.governance.pii.checksums import iban_valid, luhn_valid, prc_id15_plausible, prc_id_valid
from inhouse.governance.pii.credentials import DETECTORS, MatchValidator

LANGUAGE = "en"
# Case-sensitive on purpose (Presidio defaults to IGNORECASE): IBAN country codes and AKIA keys are upper case.
_FLAGS = re.DOTALL | re.MULTILINE
Validator = Callable[[str], "bool | None"]
# Secret recognisers are named after the kind of secret they find; audit records name that kind.
SECRET_RECOGNIZER_PREFIX = "inhouse_secret_"


class BlankSpacyNlpEngine(SpacyNlpEngine):
    """Presidio's spaCy engine over ``spacy.blank``: tokens only, nothing downloaded, no NER entities.

    Blank pipelines have no lemmatizer; lower-cased token text stands in for lemmas (Presidio's artifacts want
    some; its context step, their only reader, is skipped: ``NoContextEnhancer``). Tokens are split at whitespace
    only (``_whitespace_pipeline``).
    """

    def __init__(self, languages: Sequence[str] = (LANGUAGE,)) -> None:
        super().__init__(models=[{"lang_code": lang, "model_name": f"blank:{lang}"} for lang in languages])

    def load(self) -> None:
        self.nlp = {m["lang_code"]: _whitespace_pipeline(m["lang_code"]) for m in self.models}  # type: ignore[assignment]

    def get_supported_entities(self) -> list[str]:
        return []

    def _doc_to_nlp_artifact(self, doc: Any, language: str) -> NlpArtifacts:
        return NlpArtifacts(entities=[], tokens=doc, tokens_indices=[t.idx for t in doc],
                            lemmas=[t.text.lower() for t in doc], nlp_engine=self, language=language)


def _whitespace_pipeline(lang: str) -> Any:
    # Tokens split at whitespace only. No recogniser reads tokens (each finds its own context words), and the
    # language's punctuation rules strip a suffix at a time with a regex over the whole token: quadratic on a run of
    # `_`, `)`, `'`, `!` or `?` (3 s for 4 KB of `'`).
    from spacy.tokenizer import Tokenizer

    nlp = spacy.blank(lang)
    nlp.tokenizer = Tokenizer(nlp.vocab)
    return nlp


class RegexRecognizer(LocalRecognizer):
    """Patterns → candidates → validator (True: certain, False: drop, None: keep the pattern's score).

    Context words (searched in a character window, which works for Chinese too) raise an unvalidated
    score; negative context words (``order``, ``订单``…) lower it below the threshold.
    """

    def __init__(self, kind: str, patterns: Sequence[tuple[str, float]], *, validate: Validator | None = None,
                 validate_match: MatchValidator | None = None, validated_score: float = 1.0,
                 context: Iterable[str] = (), negative_context: Iterable[str] = (), window: int = 24,
                 name: str | None = None) -> None:
        self._patterns = [(re.compile(rx, _FLAGS), score) for rx, score in patterns]
        self._validate = validate
        self._validate_match = validate_match
        self._validated_score = validated_score
        self._context = tuple(w.lower() for w in context)
        self._negative = tuple(w.lower() for w in negative_context)
        self._window = window
        super().__init__(supported_entities=[kind], name=name or f"inhouse_{kind.lower()}",
                         supported_language=LANGUAGE)

    def load(self) -> None:
        return None

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None,
                ) -> list[RecognizerResult]:
        kind = self.supported_entities[0]
        if entities and kind not in entities:
            return []
        out: list[RecognizerResult] = []
        for rx, base in self._patterns:
            for m in rx.finditer(text):
                group = "v" if "v" in rx.groupindex else 0
                start, end = m.span(group)
                if start == end:
                    continue
                if self._validate_match is not None:
                    verdict = self._validate_match(m)
                else:
                    verdict = self._validate(text[start:end]) if self._validate else None
                if verdict is False:
                    continue
                score = self._validated_score if verdict else self._contextual(text, start, end, base)
                out.append(RecognizerResult(kind, start, end, score))
        return out

    def _contextual(self, text: str, start: int, end: int, base: float) -> float:
        if not self._context and not self._negative:
            return base
        around = (text[max(0, start - self._window):start] + " " + text[end:end + self._window // 2]).lower()
        if any(w in around for w in self._context):
            return min(1.0, base + 0.4)
        if any(w in around for w in self._negative):
            return max(0.0, base - 0.3)
        return base


# Local parts: Latin letters with their accents (``josé.garcía@``), or a name in CJK characters (``张三@``), at most
# eight of them: a CJK run glued before an address is mostly prose (``请发到张三@…``), and names are short.
_LOCAL = "A-Za-z0-9._%+\\-\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"
_CJK = "\u3400-\u4dbf\u4e00-\u9fff"


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recogniser with a bounded pattern and an offline domain check that accepts internal
    domains too (``li.na@hr.qinglan.local``): see ``addresses.email_domain_ok``. Latin local parts are bounded by
    what cannot be part of one (``邮箱alice@…`` is ``alice@…``)."""

    def __init__(self, extractor: tldextract.TLDExtract) -> None:
        self._extract = extractor
        pattern = _pattern("Email (bounded)", rf"(?:[{_CJK}]{{1,8}}|(?<![{_LOCAL}])[{_LOCAL}]+)"
                           r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+(?![A-Za-z0-9-])", 0.5)
        super().__init__(patterns=[pattern], supported_entity="EMAIL", name="inhouse_email")
        self.global_regex_flags = _FLAGS

    def validate_result(self, pattern_text: str) -> bool:
        domain = pattern_text.rpartition("@")[2]
        # The public-suffix check reads the snapshot bundled with tldextract (never the network).
        return email_domain_ok(domain, public_suffix=self._extract(domain).suffix != "")


def _pattern(name: str, regex: str, score: float) -> Any:
    from presidio_analyzer import Pattern

    return Pattern(name, regex, score)


class InternationalPhoneRecognizer(LocalRecognizer):
    """``+CC …`` numbers found and validated by libphonenumber (no default region: only explicit ``+``)."""

    def __init__(self) -> None:
        super().__init__(supported_entities=["PHONE"], name="inhouse_phone_intl", supported_language=LANGUAGE)

    def load(self) -> None:
        return None

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None,
                ) -> list[RecognizerResult]:
        if entities and "PHONE" not in entities:
            return []
        matcher = phonenumbers.PhoneNumberMatcher(text, None, leniency=phonenumbers.Leniency.VALID)
        return [RecognizerResult("PHONE", m.start, m.end, 0.9) for m in matcher]


class NameRecognizer(LocalRecognizer):
    """Person names from the user directory and the configured list (a deny list, longest name first).

    Latin names match case-insensitively between non-letters; CJK names match as written (no spaces
    separate Chinese words, so there is no boundary to require).
    """

    def __init__(self, names: Callable[[], Iterable[str]]) -> None:
        self._names = names
        self._key: frozenset[str] | None = None
        self._regex: re.Pattern[str] | None = None
        super().__init__(supported_entities=["PERSON"], name="inhouse_person", supported_language=LANGUAGE)

    def load(self) -> None:
        return None

    def _compiled(self) -> re.Pattern[str] | None:
        key = frozenset(n.strip() for n in self._names() if _usable_name(n.strip()))
        if key != self._key:
            parts = []
            for name in sorted(key, key=len, reverse=True):
                escaped = r"\s+".join(re.escape(p) for p in name.split())
                parts.append(escaped if _is_cjk(name) else rf"(?<![A-Za-z]){escaped}(?![A-Za-z])")
            self._regex = re.compile("|".join(parts), re.IGNORECASE) if parts else None
            self._key = key
        return self._regex

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None,
                ) -> list[RecognizerResult]:
        if entities and "PERSON" not in entities:
            return []
        rx = self._compiled()
        if rx is None:
            return []
        return [RecognizerResult("PERSON", m.start(), m.end(), 0.85) for m in rx.finditer(text)]


def _is_cjk(name: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" for ch in name)


def _usable_name(name: str) -> bool:
    # A one-character (CJK) or two-letter (Latin) 'name' would redact ordinary words.
    return len(name) >= 2 if _is_cjk(name) else len(name) >= 3


# -- validators -------------------------------------------------------------------------------------------


# Issuer prefixes and the lengths each issues (Visa, Mastercard old and 2-series, Amex, JCB, UnionPay and
# Discover): a number of another length is an order or account number, not a card.
_CARD_RANGES = ((re.compile(r"4"), {16, 19}), (re.compile(r"5[1-5]|2[2-7]"), {16}),
                (re.compile(r"3[47]"), {15}), (re.compile(r"35|6"), {16, 17, 18, 19}))


def valid_card(value: str) -> bool:
    digits = re.sub(r"[ .-]", "", value)
    if not any(rx.match(digits) and len(digits) in lengths for rx, lengths in _CARD_RANGES):
        return False
    groups = re.split(r"[ .-]", value)
    if len(groups) > 1 and not (
        len({c for c in value if c in " .-"}) == 1  # one kind of separator
        and ((all(len(g) == 4 for g in groups[:-1]) and 1 <= len(groups[-1]) <= 4)
             or [len(g) for g in groups] in ([4, 6, 5], [6, 13]))  # 4-4-4-4(-3), Amex 4-6-5, UnionPay 6-13
    ):
        return False
    # An 18-digit PRC ID that happens to pass Luhn is an ID, not a card.
    return luhn_valid(digits) and not prc_id_valid(digits)


def valid_cn_id(value: str) -> bool | None:
    digits = re.sub(r"[ -]", "", value)
    if len(digits) == 15:  # no check character: a context word (身份证, ID card) decides
        return None if prc_id15_plausible(digits) else False
    return prc_id_valid(digits)


def valid_ipv6(value: str) -> bool:
    if value.count(":") < 2 or not any(c.isalnum() for c in value):
        return False
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


# -- the recogniser set ----------------------------------------------------------------------------------

_NOT_ALNUM_BEFORE = r"(?<![0-9A-Za-z])"
_NOT_ALNUM_AFTER = r"(?![0-9A-Za-z])"
_PHONE_CONTEXT = ("手机", "电话", "联系", "致电", "号码", "微信", "phone", "mobile", "tel", "call", "cell",
                  "whatsapp", "contact")
_PHONE_NEGATIVE = ("订单", "单号", "发票", "编号", "运单", "order", "invoice", "tracking", "ref")
_ID_CONTEXT = ("身份证", "身份證", "证件", "證件", "证号", "id card", "identity", "id no", "id number", "id:", "id：",
               "resident id")


def build_recognizers(names: Callable[[], Iterable[str]], internal_domains: Iterable[str] = (),
                      ) -> list[EntityRecognizer]:
    internal = InternalNames(internal_domains)
    extractor = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)
    octet = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    return [
        OfflineEmailRecognizer(extractor),
        RegexRecognizer("PHONE", [
            (r"(?<![\d+])(?:(?:\+|00)86[ -]?)?1[3-9]\d{9}(?!\d)", 0.45),
            (r"(?<![\d+])(?:(?:\+|00)86[ -]?)?1[3-9]\d[ -]\d{4}[ -]\d{4}(?!\d)", 0.45),
            # 138 12345678, 1381 234 5678, 138.1234.5678 (one kind of separator; not 139.12345678, a longitude)
            (r"(?<![\d+.])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]\d{8}|\d(?P<t>[ .-])\d{3}(?P=t)\d{4}"
             r"|(?P<u>\.)\d{4}(?P=u)\d{4})(?![\d.]\d|\d)", 0.45),
        ], context=_PHONE_CONTEXT, negative_context=_PHONE_NEGATIVE, name="inhouse_phone_cn"),
        InternationalPhoneRecognizer(),
        RegexRecognizer("CN_ID", [
            (_NOT_ALNUM_BEFORE + r"[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"
             + _NOT_ALNUM_AFTER, 0.3),
            # grouped 6-8-4, as printed on forms
            (_NOT_ALNUM_BEFORE + r"[1-9]\d{5}(?P<s>[ -])(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
             r"(?P=s)\d{3}[\dXx]" + _NOT_ALNUM_AFTER, 0.3),
            (_NOT_ALNUM_BEFORE + r"[1-9]\d{7}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}" + _NOT_ALNUM_AFTER, 0.3),
        ], validate=valid_cn_id, context=_ID_CONTEXT),
        # 4111 1111 1111 1111, 4111-…, 4111.1111.1111.1111 (not the decimals of a number: 0.4111…)
        RegexRecognizer("BANK_CARD", [(r"(?<![0-9A-Za-z+-])(?<!\d\.)\d(?:[ .-]?\d){12,18}(?!\.?\d)", 0.3)],
                        validate=valid_card, validated_score=0.95),
        RegexRecognizer("IBAN", [
            (_NOT_ALNUM_BEFORE + r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}" + _NOT_ALNUM_AFTER, 0.3),
            (_NOT_ALNUM_BEFORE + r"[A-Z]{2}\d{2}(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?" + _NOT_ALNUM_AFTER, 0.3),
        ], validate=iban_valid),
        RegexRecognizer("IP", [
            (rf"(?<![\d.vV]){octet}(?:\.{octet}){{3}}(?!\.?\d)", 0.6),
            (r"(?<![0-9A-Za-z_:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?"
             r"(?<![^:]:)(?![0-9A-Za-z_]|:[0-9A-Fa-f:])", 0.3),  # "from fd00::1: …": the colon is prose
        ], validate=lambda v: valid_ipv6(v) if ":" in v else None),
        RegexRecognizer("HOST", [(host_pattern(internal.domains), 0.9)], name="inhouse_host"),
        RegexRecognizer("URL", [(url_pattern(), 0.3)], validate=lambda v: internal.is_internal_url(v) or False,
                        validated_score=0.95, name="inhouse_url"),
        *(RegexRecognizer("SECRET", d.patterns, validate_match=d.validate, validated_score=d.validated_score,
                          name=SECRET_RECOGNIZER_PREFIX + d.name) for d in DETECTORS),
        NameRecognizer(names),
    ]


class NoContextEnhancer(ContextAwareEnhancer):
    """Presidio's context step, skipped. Our recognisers score their own context words (``RegexRecognizer``); the
    only Presidio ones, the e-mail recogniser's ``email``, cannot raise a validated address (1.0 already). The step
    deep-copies every finding and walks the tokens from the start for each address: quadratic on a prompt of
    thousands of them (0.8 s for 2,857 addresses in 20 KB, 0.17 s now)."""

    def __init__(self) -> None:
        super().__init__(context_similarity_factor=0.0, min_score_with_context_similarity=0.0,
                         context_prefix_count=0, context_suffix_count=0)

    def enhance_using_context(self, text: str, raw_results: list[RecognizerResult], nlp_artifacts: NlpArtifacts,
                              recognizers: list[EntityRecognizer], context: list[str] | None = None,
                              ) -> list[RecognizerResult]:
        return raw_results


def build_analyzer(names: Callable[[], Iterable[str]], internal_domains: Iterable[str] = ()) -> AnalyzerEngine:
    """An AnalyzerEngine with only our recognisers over the blank spaCy engine (no model, no network)."""
    registry = RecognizerRegistry(recognizers=build_recognizers(names, internal_domains), global_regex_flags=_FLAGS,
                                  supported_languages=[LANGUAGE])
    return AnalyzerEngine(registry=registry, nlp_engine=BlankSpacyNlpEngine(), supported_languages=[LANGUAGE],
                          context_aware_enhancer=NoContextEnhancer())


def build_anonymizer() -> AnonymizerEngine:
    return AnonymizerEngine()


def anonymize(engine: AnonymizerEngine, text: str, spans: Sequence[tuple[str, int, int, float]],
              placeholder: Callable[[str, str], str]) -> str:
    """Replace non-overlapping ``(kind, start, end, score)`` spans through Presidio's anonymizer, one custom
    operator per kind: ``placeholder(kind, value)`` gives the replacement."""
    operators = {kind: OperatorConfig("custom", {"lambda": lambda value, kind=kind: placeholder(kind, value)})
                 for kind in {s[0] for s in spans}}
    results = [AnonymizerResult(kind, start, end, score) for kind, start, end, score in spans]
    return str(engine.anonymize(text=text, analyzer_results=results, operators=operators).text)


def analyze(engine: AnalyzerEngine, text: str, *, threshold: float) -> list[RecognizerResult]:
    results: list[RecognizerResult] = engine.analyze(text=text, language=LANGUAGE, score_threshold=threshold,
                                                     regex_flags=_FLAGS)
    return results
