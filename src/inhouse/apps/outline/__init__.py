"""Outline extraction: a document (any format ``kb.parse`` reads) or text → headings and key points with
page/section references, as JSON or Markdown. See ``outline.py``."""

from inhouse.apps.outline.outline import Outline, OutlineInput, OutlineOptions, Section, run, to_markdown

__all__ = ["Outline", "OutlineInput", "OutlineOptions", "Section", "run", "to_markdown"]
