"""Natural language → calendar actions through tool calls.

One message from the user runs up to ``max_rounds`` rounds of: the model (offered the tools through its own chat
template) → the tool calls it made, executed with validated arguments as the caller → their results fed back as
``tool`` messages. The round without tool calls is the answer. Every executed call is returned in ``actions``
(name, arguments, result or error), so the caller sees exactly what changed whatever the model then says.

The system prompt states today's date, weekday and the user's time zone; dates in tool arguments may be words
("next Friday 3pm") and are resolved in Python, not by the model.

The model's answer may repeat a trip plan's limits, read from the travel policy, or text pasted into the history: it
is remembered with the label of the policy passages applied and of the earlier answers in the history
(``governance/answer_labels.py``), so that pasted into a chat for a cloud model it counts at that label.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from inhouse.apps.context import AppContext, complete_text
from inhouse.apps.schedule.service import ScheduleService
from inhouse.apps.schedule.tools import run_tool, tool_definitions
from inhouse.apps.schedule.trip import policy_read
from inhouse.errors import InhouseError, InvalidRequest

MAX_MESSAGE_CHARS = 4000
MAX_HISTORY = 20

INSTRUCTIONS = (
    "You are a scheduling assistant. Use the tools to create, move, cancel and list the user's events, to find "
    "free time for several people, and to plan business trips. Call a tool whenever the user asks for a calendar "
    "action; never claim an action you did not perform with a tool. Pass dates and times exactly as the user said "
    "them (for example 'next Friday 3pm') or as ISO 8601; they are resolved in the user's time zone. After the "
    "tools ran, answer briefly in the user's language with what was done."
)


@dataclass
class ScheduleReply:
    text: str
    actions: list[dict[str, Any]] = field(default_factory=list)
    model: str = ""
    rounds: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"object": "schedule.reply", "reply": self.text, "actions": self.actions, "model": self.model,
                "rounds": self.rounds}


def system_prompt(ctx: AppContext) -> str:
    now = ctx.local_now()
    return (f"{INSTRUCTIONS}\nNow: {now.strftime('%A')} {now.strftime('%Y-%m-%d %H:%M')} "
            f"(time zone {ctx.tz.key}).")


def _clean_history(history: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    out = []
    for m in list(history)[-MAX_HISTORY:]:
        if not isinstance(m, Mapping) or m.get("role") not in ("user", "assistant"):
            raise InvalidRequest("'history' holds {role: user|assistant, content} messages.", param="history")
        content = m.get("content")
        if not isinstance(content, str) or len(content) > MAX_MESSAGE_CHARS:
            raise InvalidRequest(f"Each history message needs text content of at most {MAX_MESSAGE_CHARS} "
                                 "characters.", param="history")
        out.append({"role": str(m["role"]), "content": content})
    return out


_WRITES = ("create_event", "move_event", "cancel_event")


def _call_key(service: ScheduleService, ctx: AppContext, name: str, args: Any) -> str:
    """Identity of a change: create_event by title and start instant (whatever else the model adds), others by
    all their arguments."""
    if isinstance(args, dict) and name == "create_event":
        start = str(args.get("start", "")).strip()
        with contextlib.suppress(InhouseError):
            start = service.when(ctx, start).isoformat()
        return json.dumps([name, str(args.get("title", "")).strip().lower(), start])
    return json.dumps([name, args], sort_keys=True, default=str)


def _summary(actions: list[dict[str, Any]]) -> str:
    done = [a for a in actions if "error" not in a["result"]]
    failed = [a for a in actions if "error" in a["result"]]
    parts = [f"Done: {', '.join(a['tool'] for a in done)}." if done else ""]
    parts += [f"{a['tool']} failed: {a['result']['error']}" for a in failed]
    return " ".join(p for p in parts if p) or "Nothing was done."


async def chat(service: ScheduleService, ctx: AppContext, message: str, *,
               history: Sequence[Mapping[str, Any]] = (), max_rounds: int = 4) -> ScheduleReply:
    if not isinstance(message, str) or not message.strip():
        raise InvalidRequest("'message' must not be empty.", param="message")
    if len(message) > MAX_MESSAGE_CHARS:
        raise InvalidRequest(f"'message' is longer than {MAX_MESSAGE_CHARS} characters.", param="message")
    said = [*_clean_history(history), {"role": "user", "content": message.strip()}]
    messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt(ctx)}, *said]
    tools = tool_definitions()
    actions: list[dict[str, Any]] = []
    done: dict[str, dict[str, Any]] = {}  # what already succeeded in this message (small models repeat calls)
    model = ctx.model
    for round_no in range(1, max_rounds + 1):
        result = await complete_text(ctx, messages, tools=tools, tool_choice="auto")
        model = result.model
        if not result.tool_calls:
            text = result.text.strip()
            if not text or text.startswith(("{\"name\"", "<tool_call>")):
                text = _summary(actions)  # unparsed call markup is no answer for a person
            else:
                _, policy_label = policy_read(a["result"] for a in actions if a["tool"] == "plan_trip")
                await ctx.remember_answer([text], [policy_label] if policy_label else [], said)
            return ScheduleReply(text, actions, model, round_no)
        messages.append({"role": "assistant", "content": result.text,
                         "tool_calls": [c.to_dict() for c in result.tool_calls]})
        for call in result.tool_calls:
            try:
                args: Any = json.loads(call.arguments)
            except json.JSONDecodeError:
                args = call.arguments
            key = _call_key(service, ctx, call.name, args)
            if key in done:
                # The same change again (the model re-issues a call after seeing its result): do not repeat it.
                out = {**done[key], "note": "already done in this conversation turn; not repeated"}
                messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name,
                                 "content": json.dumps(out, ensure_ascii=False, default=str)[:6000]})
                continue
            out = await run_tool(service, ctx, call.name, call.arguments)
            if "error" not in out and call.name in _WRITES:
                done[key] = out
            actions.append({"tool": call.name, "arguments": args, "result": out})
            messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name,
                             "content": json.dumps(out, ensure_ascii=False, default=str)[:6000]})
    # The model kept calling tools: stop, and report what was done rather than loop on.
    return ScheduleReply(_summary(actions), actions, model, max_rounds)
