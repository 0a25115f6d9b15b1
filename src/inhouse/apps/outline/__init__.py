"""Outline extraction: a document (any format ``kb.parse`` reads) or text → headings and key points with
page/section references, as JSON or Markdown. See ``outline.py``."""

from inhouse.apps.outline.outline import (
    Outline,
    OutlineAssistant,
    OutlineInput,
    OutlineOptions,
    Section,
    build_outline_assistant,
    run,
    to_markdown,
)

__all__ = ["Outline", "OutlineAssistant", "OutlineInput", "OutlineOptions", "Section", "build_outline_assistant", "run",
           "to_markdown"]
