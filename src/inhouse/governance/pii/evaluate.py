"""Precision and recall of the PII redactor on the generated corpora, and what would leave under the policy.

    python -m inhouse.governance.pii.evaluate [--n 5000] [--seed 7] [--corpus all|sentences|company]

Two corpora: ``sentences`` (``corpus.py``: one to three values per sentence, hard negatives) and ``company``
(``company_corpus.py``: config files, e-mail threads, tickets and chat logs, EN and ZH).

* recall of a kind: share of its values covered by a finding of the same kind (the address kinds EMAIL, HOST,
  URL and IP count as one family: ``ldaps://db01.corp.lan`` found as a URL covers the labelled host);
* precision of a kind: share of its findings that overlap a value of the same kind (or family);
* left after redaction: values whose text still appears in the redacted text;
* leaked under the policy: values in what would go out — nothing when a secret is found (such a request is
  refused or answered locally), else the redacted text. The acceptance figure is 0.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from inhouse.governance.pii.company_corpus import generate_company_corpus
from inhouse.governance.pii.corpus import NAMES, Sample, generate_corpus
from inhouse.governance.pii.redact import KINDS, NEVER_SENT_KINDS, STRUCTURED_KINDS, RedactionSession, Redactor

ADDRESS_KINDS = frozenset({"EMAIL", "HOST", "URL", "IP"})


def same_kind(found: str, labelled: str) -> bool:
    return found == labelled or (found in ADDRESS_KINDS and labelled in ADDRESS_KINDS)


@dataclass
class Scores:
    tp_values: Counter[str] = field(default_factory=Counter)
    values: Counter[str] = field(default_factory=Counter)
    tp_findings: Counter[str] = field(default_factory=Counter)
    findings: Counter[str] = field(default_factory=Counter)
    leaked: int = 0  # values left in the redacted text
    leaked_out: int = 0  # values in what would go out under the policy (the acceptance figure)
    kept_back: int = 0  # samples not sent at all: a secret was found
    n_samples: int = 0
    seconds: float = 0.0

    def recall(self, kinds: Sequence[str]) -> float:
        total = sum(self.values[k] for k in kinds)
        return sum(self.tp_values[k] for k in kinds) / total if total else 1.0

    def precision(self, kinds: Sequence[str]) -> float:
        total = sum(self.findings[k] for k in kinds)
        return sum(self.tp_findings[k] for k in kinds) / total if total else 1.0


def evaluate(redactor: Redactor, samples: Sequence[Sample]) -> Scores:
    scores = Scores(n_samples=len(samples))
    start = time.perf_counter()
    for sample in samples:
        findings = redactor.analyze(sample.text)
        for span in sample.spans:
            scores.values[span.kind] += 1
            if any(same_kind(f.kind, span.kind) and f.start <= span.start and f.end >= span.end for f in findings):
                scores.tp_values[span.kind] += 1
        for f in findings:
            scores.findings[f.kind] += 1
            if any(same_kind(f.kind, s.kind) and f.start < s.end and s.start < f.end for s in sample.spans):
                scores.tp_findings[f.kind] += 1
        redacted = redactor.redact(sample.text, RedactionSession())
        left = sum(1 for s in sample.spans if s.value in redacted)
        scores.leaked += left
        if any(f.kind in NEVER_SENT_KINDS for f in findings):
            scores.kept_back += 1
        else:
            scores.leaked_out += left
    scores.seconds = time.perf_counter() - start
    return scores


def format_report(scores: Scores) -> str:
    lines = [f"{'kind':<12}{'values':>8}{'recall':>9}{'findings':>10}{'precision':>11}"]
    for kind in KINDS:
        lines.append(f"{kind:<12}{scores.values[kind]:>8}{scores.recall([kind]):>9.4f}"
                     f"{scores.findings[kind]:>10}{scores.precision([kind]):>11.4f}")
    for label, kinds in (("structured", STRUCTURED_KINDS), ("overall", KINDS)):
        n = sum(scores.values[k] for k in kinds)
        lines.append(f"{label:<12}{n:>8}{scores.recall(kinds):>9.4f}"
                     f"{sum(scores.findings[k] for k in kinds):>10}{scores.precision(kinds):>11.4f}")
    total = sum(scores.values.values())
    lines.append(f"values left in the redacted text: {scores.leaked} of {total}; leaked under the policy: "
                 f"{scores.leaked_out}; {scores.kept_back} of {scores.n_samples} prompts kept back (a secret)")
    lines.append(f"{scores.n_samples} prompts in {scores.seconds:.1f} s "
                 f"({1000 * scores.seconds / max(1, scores.n_samples):.2f} ms each, analyze + redact)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=5000, help="prompts to generate per corpus")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--corpus", choices=("all", "sentences", "company"), default="all")
    args = parser.parse_args(argv)
    redactor = Redactor(names=NAMES)
    leaked = 0
    for name, generate in (("sentences", generate_corpus), ("company", generate_company_corpus)):
        if args.corpus in ("all", name):
            scores = evaluate(redactor, generate(args.n, seed=args.seed))
            print(f"== {name} corpus (n={args.n}, seed={args.seed})")
            print(format_report(scores))
            leaked += scores.leaked_out
    return 1 if leaked else 0


if __name__ == "__main__":
    raise SystemExit(main())
