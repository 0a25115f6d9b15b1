"""Precision and recall of the PII redactor on the generated corpus.

    python -m inhouse.governance.pii.evaluate [--n 2000] [--seed 7]

* recall of a kind: share of its values covered by a finding of the same kind;
* precision of a kind: share of its findings that overlap a value of the same kind;
* leak rate: share of values whose text still appears after redaction (what matters for egress: a value
  found under the wrong kind is still redacted).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from inhouse.governance.pii.corpus import NAMES, Sample, generate_corpus
from inhouse.governance.pii.redact import KINDS, STRUCTURED_KINDS, RedactionSession, Redactor


@dataclass
class Scores:
    tp_values: Counter[str] = field(default_factory=Counter)
    values: Counter[str] = field(default_factory=Counter)
    tp_findings: Counter[str] = field(default_factory=Counter)
    findings: Counter[str] = field(default_factory=Counter)
    leaked: int = 0
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
            if any(f.kind == span.kind and f.start <= span.start and f.end >= span.end for f in findings):
                scores.tp_values[span.kind] += 1
        for f in findings:
            scores.findings[f.kind] += 1
            if any(s.kind == f.kind and f.start < s.end and s.start < f.end for s in sample.spans):
                scores.tp_findings[f.kind] += 1
        redacted = redactor.redact(sample.text, RedactionSession())
        scores.leaked += sum(1 for s in sample.spans if s.value in redacted)
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
    lines.append(f"leaked values after redaction: {scores.leaked} of {total}; "
                 f"{scores.n_samples} sentences in {scores.seconds:.1f} s "
                 f"({1000 * scores.seconds / max(1, scores.n_samples):.2f} ms each, analyze + redact)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=2000, help="sentences to generate")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    scores = evaluate(Redactor(names=NAMES), generate_corpus(args.n, seed=args.seed))
    print(format_report(scores))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
