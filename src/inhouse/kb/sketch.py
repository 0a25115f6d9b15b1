"""A code sketch of what the question asks, written by the local coder model, so retrieval finds the feature's name.

Why: people name the goal ("a scratch folder that disappears on its own", "stop a query that has run for an
hour"), manuals name the feature (``tempfile.TemporaryDirectory``, ``pg_cancel_backend``). Neither index bridges
the two: the question's words are not on the page, and e5-small does not know that the goal means that name. A
coder model does: asked to *write the code* that does the thing, it names the function, command or setting, which
it does far more reliably than when asked which "search terms" the documentation would use (it restated the
question's words; docs/knowledge.md). This is HyDE (a hypothetical document searched instead of the question)
with code as the document, which is what a coder model writes best.

The sketch is never shown to anyone and never answers: the prompt asks for code only (no explanation), and what
comes back is checked (fences, comments and prose lines dropped, at most a few lines, at least one name in it).
From the code, ``sketch_names`` takes the names a manual would index: dotted names (``heapq.nsmallest``), called
functions, imported modules, long options (``--schema-only``), settings assigned in a configuration line, minus
the keywords of common languages and the variables the sketch binds itself. Nothing here knows which manual is
searched: it works the same for Python, SQL, shell commands or a server's configuration.

``sketch_wordings`` turns a sketch into the extra wordings retrieval searches beside the question (``names``: the
names as one line; ``code``: the code itself; ``both``), fused the way a translation is (``retrieve.fuse_wordings``).
"""

from __future__ import annotations

import keyword
import re
from typing import TYPE_CHECKING

from inhouse.kb.rewrite import QuestionRewriter

if TYPE_CHECKING:
    from inhouse.chat.service import ChatService

SYSTEM = ("You are a programmer who replies with code only: the code, command, query or configuration that does "
          "what the user describes. You never explain, comment or answer in words.")
MAX_LINES = 6
MAX_CHARS = 400
MAX_NAMES = 10
USES = ("names", "code", "both")

# Keywords of the languages a technical manual is written about (Python, SQL, shells, C-like, configuration files):
# words every snippet uses, which name no feature.
_KEYWORDS = frozenset(k.lower() for k in keyword.kwlist) | frozenset({
    "match", "case", "print", "self", "cls", "main", "__name__", "__main__", "args", "kwargs", "true", "false", "null",
    "none", "select", "from", "where", "and", "or", "not", "insert", "into", "values", "update", "set", "delete",
    "create", "drop", "alter", "table", "index", "join", "left", "right", "inner", "outer", "on", "group", "by",
    "order", "limit", "offset", "having", "distinct", "as", "is", "in", "like", "between", "when", "then", "else",
    "end", "interval", "begin", "commit", "rollback", "asc", "desc", "all", "exists", "if", "fi", "do", "done",
    "esac", "echo", "sudo", "cd", "export", "function", "return", "var", "let", "const", "new", "void", "int", "char",
    "float",
    "double", "string", "bool", "static", "public", "private", "include", "define", "struct", "using", "namespace",
    "std", "printf", "example", "foo", "bar", "baz", "my", "your", "path", "to", "file", "value", "name",
})
_STRING = re.compile(r"'''.*?'''|\"\"\".*?\"\"\"|'[^'\n]*'|\"[^\"\n]*\"", re.DOTALL)
_NAME = re.compile(r"(?<![\w.\-])[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_OPTION = re.compile(r"(?<!\S)--[A-Za-z][\w-]+")
_BOUND = re.compile(r"\b(?:def|class|as|for|lambda)\s+([A-Za-z_]\w*)")
_ASSIGNED = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?::[^=]*)?=(?!=)", re.MULTILINE)
_CODE_MARK = re.compile(r"[()._=/:;@+\[\]{}<>|$*]|(?<!\S)-")  # what words alone ("30 days") do not have
_FENCE = re.compile(r"^\s*(```|~~~)")
_COMMENT = re.compile(r"^\s*(#|//|--\s|;|/\*|\*|rem\s)", re.IGNORECASE)
# A sentence: a capitalised first word (not SQL's SELECT), four words or more, nothing but words and punctuation.
_PROSE = re.compile(r"^[A-Z][a-z']*(\s+[A-Za-z,'’()\-]+){3,}[.:!?]?$")


# With a subject, the system message and the request both say to write for the system the documents describe, and
# to use its ready-made feature: told only what the documents are, the model still wrote shell for one in six of
# the Python manual's questions (``rm -rf`` for shutil.rmtree, ``sha256sum`` for hashlib); said twice, it writes
# the manual's own feature (docs/knowledge.md, "Questions that name the goal").
FOR_SUBJECT = " Write it with the language, library and tools of the system the user's documents describe."
READY_MADE = ("Write it with what those documents describe. Use the ready-made function, module, command or setting "
              "that already does it, not your own implementation.")


def sketch_request(question: str, subject: str = "") -> list[dict[str, str]]:
    """The prompt. ``subject``: what the documents searched are about (a collection's description, e.g.
    "PostgreSQL 16 manual"), so the code is written for that system, with its own feature, rather than for one the
    model guesses."""
    subject = subject.strip()[:200]
    about = f" The documents searched are: {subject}. {READY_MADE}" if subject else ""
    return [{"role": "system", "content": SYSTEM + (FOR_SUBJECT if subject else "")},
            {"role": "user", "content": "Write the shortest code, command, query or configuration setting that does "
                                        f"this, at most four lines.{about} Code only: no explanation, no comments, "
                                        f"do not answer in words.\n\n{question}"}]


def clean_sketch(question: str, text: str) -> str | None:
    """The usable code in ``text``, or None: the first fenced block if there is one (else the reply without its
    sentences), comment lines dropped, at most ``MAX_LINES`` lines and ``MAX_CHARS`` characters, set as code by the
    model (fenced or in backticks) or with a mark of code in it (brackets, a dot, ``=``, an option's dash, …), and at
    least one name in it: a reply in plain words ("30 days") is no sketch."""
    raw = text.replace("\r", "").split("\n")
    fences = [i for i, line in enumerate(raw) if _FENCE.match(line)]
    if fences:  # a fenced block: only its inside (a sentence before or after it is no code)
        raw = raw[fences[0] + 1:fences[1] if len(fences) > 1 else None]
    lines = []
    marked = bool(fences)  # the model itself set it as code (a fenced block or `inline code`)
    for line in raw:
        if not line.strip() or _COMMENT.match(line) or (not fences and _PROSE.match(line.strip())):
            continue
        if line.strip().startswith("`") and line.strip().endswith("`"):
            marked, line = True, line.strip().strip("`")
        lines.append(line.rstrip())
        if len(lines) >= MAX_LINES:
            break
    code = "\n".join(lines)[:MAX_CHARS].strip()
    if not code or code == question.strip() or not (marked or _CODE_MARK.search(code)) or not sketch_names(code):
        return None
    return code


def sketch_names(code: str) -> list[str]:
    """The names in ``code`` a manual would index, in order of first appearance, at most ``MAX_NAMES``: dotted
    names, called functions, modules, long options and assigned settings, without language keywords, the plain
    words of strings, one-letter names, and the variables the code binds itself (``as tmp``, ``for row``, a name
    assigned and then used again); of their attributes only the attribute (``people.sort`` → ``sort``)."""
    # Strings are data ('*.txt', 'active'), except code passed as a string (psql -c "SELECT …", python -c "…"):
    # inside them only names that look like code count (with "_" or ".", or called).
    quoted = [(m.start() + n.start(), n.group(0)) for m in _STRING.finditer(code) for n in _NAME.finditer(m.group(0))
              if re.search(r"[_.]", n.group(0)) or m.group(0)[n.end():].lstrip().startswith("(")]
    code = _STRING.sub(lambda m: " " * len(m.group(0)), code)
    bound = set(_BOUND.findall(code))
    for name in set(_ASSIGNED.findall(code)):
        if len(re.findall(rf"(?<![\w.]){re.escape(name)}\b", code)) > 1:  # a variable, not a setting
            bound.add(name)
    found: list[tuple[int, str]] = quoted + [(m.start(), m.group(0)) for m in _OPTION.finditer(code)]
    found += [(m.start(), m.group(0)) for m in _NAME.finditer(code)]
    out: list[str] = []
    for _, name in sorted(found):
        root, _, rest = name.lstrip("-").partition(".")
        if root in bound and rest:  # a method of the code's own variable: the method is the feature
            name, root = rest, rest.split(".", 1)[0]
        if (root in bound or len(name) < 2 or name.lower() in _KEYWORDS or name in out
                or (name.startswith("_") and "." not in name)):
            continue
        out.append(name)
        if len(out) >= MAX_NAMES:
            break
    return out


def sketch_wordings(code: str | None, use: str = "names") -> list[str]:
    """The extra wordings searched for a sketch: its names as one line, the code itself, or both (``USES``)."""
    if use not in USES:
        raise ValueError(f"use must be one of {USES}, not {use!r}")
    if not code:
        return []
    out = []
    if use in ("names", "both"):
        names = sketch_names(code)
        if names:
            out.append(" ".join(names))
    if use in ("code", "both"):
        out.append(code)
    return out


class CodeSketcher(QuestionRewriter):
    """``sketch(question, model=…)``: the checked code sketch of what the question asks, or None."""

    stop = ()

    def __init__(self, chat: ChatService, *, max_tokens: int = 64, cache_size: int = 512) -> None:
        super().__init__(chat, max_tokens=max_tokens, cache_size=cache_size)

    def request(self, question: str, context: str = "") -> list[dict[str, str]]:
        return sketch_request(question, context)

    def clean(self, question: str, text: str) -> str | None:
        return clean_sketch(question, text)

    async def sketch(self, question: str, *, model: str, subject: str = "",
                     cache_owner: str | None = None) -> str | None:
        """The code sketch of ``question`` for a system described by ``subject`` (see ``sketch_request``)."""
        return await self.rewrite(question, model=model, context=subject, cache_owner=cache_owner)
