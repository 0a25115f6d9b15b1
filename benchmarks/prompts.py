"""Deterministic prompts: the same text on every run and for every server, so outputs are comparable."""

from __future__ import annotations

import random

from benchmarks.client import Message

# Greedy decoding of this prompt keeps going well past 256 tokens on the catalog models, so the token
# count is set by max_tokens and not by an early end-of-turn.
DECODE_MESSAGES: list[Message] = [
    {
        "role": "user",
        "content": "Count from 1 to 1000, one number after another, separated by commas. "
        "Do not stop and do not add anything else.",
    },
]

_TOPICS = [
    "the history of the printing press",
    "how bridges carry load",
    "the water cycle",
    "photosynthesis",
    "the rules of chess",
    "how a compiler works",
    "the life of honeybees",
    "volcanoes",
    "the Roman roads",
    "how vaccines train immunity",
    "ocean tides",
    "the invention of the telephone",
    "desert ecosystems",
    "how airplanes fly",
    "the French revolution",
    "coral reefs",
    "how batteries store energy",
    "glaciers",
    "the Silk Road",
    "how the internet routes packets",
]

_WORDS = [
    "account",
    "invoice",
    "supplier",
    "contract",
    "policy",
    "employee",
    "manager",
    "approval",
    "budget",
    "quarter",
    "report",
    "audit",
    "customer",
    "ticket",
    "warehouse",
    "shipment",
    "delivery",
    "region",
    "office",
    "server",
    "backup",
    "password",
    "access",
    "network",
    "training",
    "holiday",
    "payroll",
    "expense",
    "travel",
    "receipt",
    "vendor",
    "license",
    "renewal",
    "project",
    "milestone",
    "risk",
    "review",
    "security",
    "incident",
    "escalation",
    "support",
    "priority",
    "response",
    "deadline",
    "meeting",
    "minutes",
    "agenda",
    "schedule",
    "inventory",
    "order",
    "return",
    "refund",
    "warranty",
    "compliance",
    "retention",
    "archive",
    "document",
    "template",
    "signature",
]


def concurrency_messages(i: int) -> list[Message]:
    """A distinct short prompt per client."""
    topic = _TOPICS[i % len(_TOPICS)]
    suffix = f" (part {i // len(_TOPICS) + 1})" if i >= len(_TOPICS) else ""
    return [{"role": "user", "content": f"Write a detailed essay about {topic}{suffix}."}]


def filler_document(n_words: int, seed: int) -> str:
    """Company-handbook-like prose of about ``n_words`` words (numbered clauses, no long exact repeats)."""
    rng = random.Random(seed)
    clauses: list[str] = []
    words = 0
    k = 1
    while words < n_words:
        body = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(10, 18)))
        clause = f"{k}. The {rng.choice(_WORDS)} rule: {body}."
        clauses.append(clause)
        words += len(clause.split())
        k += 1
    return "\n".join(clauses)


def rag_system_prompt(document: str) -> str:
    return (
        "You are the internal help desk assistant. Answer only from the context below; if the answer "
        "is not there, say so. Quote clause numbers.\n\n### Context\n" + document + "\n### End of context"
    )


RAG_QUESTIONS = [
    "Which clause talks about refunds?",
    "What does the policy say about travel expenses?",
    "Who approves a new supplier contract?",
    "How long are archived documents retained?",
    "What is the escalation path for a security incident?",
    "Which rule covers password access?",
    "Summarize the holiday policy in one sentence.",
    "What happens when a warranty expires?",
]
