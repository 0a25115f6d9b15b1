"""Questions translated between Chinese and English by the local model, so retrieval can search both wordings.

Why: trigram keyword search cannot match across languages, and multilingual-e5-small ranks every same-language
chunk above the right other-language one (on the cross-lingual QA set, an English question found its Chinese
document in the top 5 for 0 of 17 questions; docs/knowledge.md). A question searched in both languages finds it.

The model is asked to translate, never to answer: the measured prompt for Qwen2.5-Coder ("Translate the user's
question into Chinese") made the 0.5B model answer the question (with invented facts) about half of the time; a
system message that forbids answering plus "Do not answer it" in the request gave clean translations on every
question of the set with the 1.5B model. The output is checked before it is used (one line, not empty, not the
question itself, not runaway long); anything else means no translation, and retrieval runs on the question alone.

Only a model this server runs may translate (the passages are not involved, but the question must not travel to
an external provider merely to be searched). Results are kept in a small per-instance LRU, so a repeated question
costs nothing (``kb.rewrite``, shared with the code sketch of ``kb.sketch``).
"""

from __future__ import annotations

import re

from inhouse.kb.rewrite import QuestionRewriter

SYSTEM = "You are a translator. You translate the text the user gives you and never answer or comment on it."
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]{2,}")
_QUOTES = "\"'“”‘’「」『』"


def is_chinese(text: str) -> bool:
    """More Han characters than Latin words: the question is (mostly) Chinese."""
    return len(_HAN.findall(text)) > len(_LATIN.findall(text))


def target_language(question: str) -> str:
    return "English" if is_chinese(question) else "Simplified Chinese"


def translation_request(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Translate this question into {target_language(question)}. "
                                        f"Do not answer it.\n\n{question}"}]


def clean_translation(question: str, text: str) -> str | None:
    """The usable translation in ``text``, or None (empty, unchanged, still in the question's language, or
    much longer than the question: a model that started answering)."""
    line = text.strip().split("\n", 1)[0].strip().strip(_QUOTES).strip()
    if not line or line == question.strip() or len(line) > 4 * len(question) + 40:
        return None
    if is_chinese(line) == is_chinese(question):
        return None
    return line


class QueryTranslator(QuestionRewriter):
    def request(self, question: str, context: str = "") -> list[dict[str, str]]:
        return translation_request(question)

    def clean(self, question: str, text: str) -> str | None:
        return clean_translation(question, text)

    async def translate(self, question: str, *, model: str, cache_owner: str | None = None) -> str | None:
        """The question in the other language (Chinese ↔ English), or None when it cannot be had here."""
        return await self.rewrite(question, model=model, cache_owner=cache_owner)
