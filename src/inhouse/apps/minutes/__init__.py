"""Meeting minutes: a transcript (text, WebVTT, SRT) or audio → title, summary, decisions, action items with
owners, ISO due dates and evidence lines, open questions and the next meeting; exported as JSON, Markdown or
iCalendar. ``run(ctx, MinutesInput)`` is the entry point (``pipeline.py``)."""

from inhouse.apps.minutes.pipeline import MinutesOptions, Transcriber, run, run_transcript
from inhouse.apps.minutes.schema import ActionItem, Decision, Evidence, Minutes, MinutesInput, NextMeeting, OpenQuestion

__all__ = ["ActionItem", "Decision", "Evidence", "Minutes", "MinutesInput", "MinutesOptions", "NextMeeting",
           "OpenQuestion", "Transcriber", "run", "run_transcript"]
