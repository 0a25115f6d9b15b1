"""iCalendar (RFC 5545) writer and reader for events (VEVENT) and to-dos (VTODO).

Writing: CRLF line ends, lines folded at 75 octets on UTF-8 character boundaries, TEXT values escaped
(``\\ ; , newline``), one ``UID`` and ``DTSTAMP`` per component; no value, whatever it holds, adds a line of its own
(other control characters are dropped from TEXT, and a name or address becomes one line). A person given by name
only gets a placeholder address (``mailto:mei.lin@invalid``; a name that is not plain ASCII letters, such as 张伟,
gets ``u-`` and a hash of the name, so two people never share one address) and the name in ``CN``. Aware
date-times are written in UTC with a ``Z`` (so no VTIMEZONE blocks are needed and every client agrees on the
instant); naive date-times are "floating" (local wherever the calendar is opened); ``date`` values are all-day
(``VALUE=DATE``).

Reading: unfolds lines (CRLF or bare LF), unescapes TEXT, understands ``Z`` (UTC), ``TZID=`` (an IANA zone; else
the file's own VTIMEZONE of that name, its STANDARD/DAYLIGHT offsets and yearly rules; else a Windows zone name as
Outlook and Exchange write them, "W. Europe Standard Time": ``timezones.py``; a zone none of these
explains is read in ``default_tz`` and reported in ``IcsItem.warnings``), floating times (read in
``default_tz`` when given, else kept naive), ``VALUE=DATE`` and ``DURATION`` instead of ``DTEND`` (weeks and days
nominal, hours, minutes and seconds exact, RFC 5545 3.3.6: ``PT2H`` across a DST change lasts two hours). Nested
components (VALARM) are skipped; recurrence rules are kept as text, not expanded; ``RECURRENCE-ID`` (one changed
occurrence of a series, sharing its UID) is kept on the item so a caller can tell it from the series.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

from inhouse.apps.dates import add_exact
from inhouse.apps.timezones import DATETIME_RE, VTimezone, read_timezones, zone_named
from inhouse.errors import InvalidRequest

Kind = Literal["VEVENT", "VTODO"]
When = datetime | date
PRODID = "-//inhouse//inhouse assistants//EN"
MAX_ICS_BYTES = 5 * 1024 * 1024
MAX_ITEMS = 10_000
_FOLD_OCTETS = 75
_UTC = ZoneInfo("UTC")


@dataclass
class IcsItem:
    """One event or to-do. ``end`` is for events, ``due`` for to-dos."""

    summary: str
    start: When | None = None
    end: When | None = None
    kind: Kind = "VEVENT"
    uid: str = field(default_factory=lambda: f"{secrets.token_hex(12)}@inhouse")
    description: str = ""
    location: str = ""
    due: When | None = None
    attendees: list[str] = field(default_factory=list)  # e-mail addresses or names
    organizer: str = ""
    status: str = ""  # CONFIRMED / CANCELLED / TENTATIVE, NEEDS-ACTION / COMPLETED …
    categories: list[str] = field(default_factory=list)
    rrule: str = ""  # kept verbatim, never expanded
    recurrence_id: When | None = None  # set on an override of one occurrence of a recurring series
    dtstamp: datetime | None = None
    warnings: list[str] = field(default_factory=list)  # reader only: what could not be honoured exactly


# -- writing --------------------------------------------------------------------------------------------


# Whatever the caller gave, the writer puts no line break or other control character into a content line: one
# there ends the line, and an attendee "x@corp.com<CR><LF>END:VEVENT<CR><LF>BEGIN:VEVENT…" added an event of its
# own (a phishing call link) to the exported calendar. U+0085, U+2028 and U+2029 count as line breaks too: some
# readers split lines on them (Python's str.splitlines does).
_LINE_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but tab and line breaks, DEL, C1
_NOT_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def escape_text(value: str) -> str:
    """A TEXT value (RFC 5545 3.3.11): ``\\ ; ,`` escaped, a line break as ``\\n``, other control characters
    dropped (TEXT has no place for them; a tab stays)."""
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return _CONTROL.sub("", _LINE_BREAK.sub(r"\\n", value))


def _one_line(value: str) -> str:
    """``value`` with each run of control characters and line breaks (tab too) as one space, for a parameter value
    or a URI, where no escape exists for them."""
    return _NOT_ONE_LINE.sub(" ", value).strip()


def fold_line(line: str) -> str:
    """Fold one content line into ≤75-octet pieces joined by CRLF + space, never splitting a character."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    limit = _FOLD_OCTETS
    for ch in line:
        n = len(ch.encode("utf-8"))
        if size + n > limit:
            out.append("".join(current))
            current, size = [], 0
            limit = _FOLD_OCTETS - 1  # continuation lines start with one space
        current.append(ch)
        size += n
    out.append("".join(current))
    return "\r\n ".join(out)


def _ymd(value: date) -> str:
    # Not strftime("%Y"): it writes year 999 as "999", which no reader accepts.
    return f"{value.year:04d}{value.month:02d}{value.day:02d}"


def format_when(value: When) -> tuple[str, str]:
    """``(parameters, value)`` of a DATE or DATE-TIME property value."""
    if isinstance(value, datetime):
        utc = value if value.tzinfo is None else value.astimezone(UTC)
        text = f"{_ymd(utc)}T{utc.hour:02d}{utc.minute:02d}{utc.second:02d}"
        return "", text if value.tzinfo is None else text + "Z"
    return ";VALUE=DATE", _ymd(value)


def _prop(name: str, value: str, params: str = "") -> str:
    return fold_line(f"{name}{params}:{value}")


def _when_prop(name: str, value: When) -> str:
    params, text = format_when(value)
    return _prop(name, text, params)


def _item_lines(item: IcsItem, dtstamp: datetime) -> Iterator[str]:
    yield f"BEGIN:{item.kind}"
    yield _prop("UID", escape_text(item.uid))
    yield _when_prop("DTSTAMP", (item.dtstamp or dtstamp).astimezone(UTC))
    if item.start is not None:
        yield _when_prop("DTSTART", item.start)
    if item.kind == "VEVENT" and item.end is not None:
        yield _when_prop("DTEND", item.end)
    if item.kind == "VTODO" and item.due is not None:
        yield _when_prop("DUE", item.due)
    yield _prop("SUMMARY", escape_text(item.summary))
    if item.description:
        yield _prop("DESCRIPTION", escape_text(item.description))
    if item.location:
        yield _prop("LOCATION", escape_text(item.location))
    if item.organizer:
        yield _prop("ORGANIZER", _cal_address(item.organizer), _cn(item.organizer))
    for who in item.attendees:
        yield _prop("ATTENDEE", _cal_address(who), _cn(who))
    if item.status:
        yield _prop("STATUS", escape_text(item.status.upper()))
    if item.categories:
        yield _prop("CATEGORIES", ",".join(escape_text(c) for c in item.categories))
    if item.rrule:
        yield _prop("RRULE", _one_line(item.rrule))
    if item.recurrence_id is not None:
        yield _when_prop("RECURRENCE-ID", item.recurrence_id)
    yield f"END:{item.kind}"


def _cal_address(who: str) -> str:
    who = _one_line(who)
    if who.lower().startswith("mailto:"):
        return who
    if "@" in who and " " not in who:
        return f"mailto:{who}"
    # A bare name: RFC 5545 wants a URI; an "invalid" mailto keeps clients happy and the name in CN. Clients tell
    # attendees apart by address, so a name the ASCII form would lose letters of (张伟, José) gets a hash of itself.
    name = unicodedata.normalize("NFC", who)
    local = re.sub(r"[^A-Za-z0-9._-]+", ".", name).strip(".").lower()
    if not local or len(local) > 64 or not re.fullmatch(r"[A-Za-z0-9._\- ]+", name):
        local = "u-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:12]
    return f"mailto:{local}@invalid"


def _cn(who: str) -> str:
    who = _one_line(who)
    if "@" in who and " " not in who:
        return ""
    name = who.replace('"', "'")  # a quoted parameter value holds no DQUOTE (and, by _one_line, no control)
    return f';CN="{name}"'


def write_ics(items: Iterable[IcsItem], *, calendar_name: str = "", dtstamp: datetime | None = None) -> str:
    """A complete VCALENDAR with CRLF line ends (the text to serve as ``text/calendar``)."""
    stamp = dtstamp or datetime.now(UTC)
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", _prop("PRODID", PRODID), "CALSCALE:GREGORIAN"]
    if calendar_name:
        lines.append(_prop("X-WR-CALNAME", escape_text(calendar_name)))
    for item in items:
        lines.extend(_item_lines(item, stamp))
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


# -- reading --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContentLine:
    name: str
    params: dict[str, str]
    value: str


def unfold(text: str) -> list[str]:
    lines: list[str] = []
    for raw in re.split(r"\r\n|\n|\r", text):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += raw[1:]
        elif raw:
            lines.append(raw)
    return lines


def parse_line(line: str) -> ContentLine:
    """``NAME;P1=V1;P2="V:2":value`` → ContentLine (quoted parameter values may hold ``:`` and ``;``)."""
    i, n = 0, len(line)
    in_quote = False
    while i < n:
        ch = line[i]
        if ch == '"':
            in_quote = not in_quote
        elif ch == ":" and not in_quote:
            break
        i += 1
    if i >= n:
        raise InvalidRequest(f"Malformed iCalendar line (no ':'): {line[:80]!r}", param="file")
    head, value = line[:i], line[i + 1:]
    parts = _split_params(head)
    name = parts[0].upper()
    if not name or not re.fullmatch(r"[A-Z0-9-]+", name):
        raise InvalidRequest(f"Malformed iCalendar property name: {parts[0][:40]!r}", param="file")
    params: dict[str, str] = {}
    for p in parts[1:]:
        key, _, val = p.partition("=")
        params[key.upper()] = val[1:-1] if len(val) >= 2 and val[0] == val[-1] == '"' else val
    return ContentLine(name, params, value)


def _split_params(head: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    in_quote = False
    for ch in head:
        if ch == '"':
            in_quote = not in_quote
        if ch == ";" and not in_quote:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def unescape_text(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append("\n" if nxt in "nN" else nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


_DATE_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DURATION_RE = re.compile(r"^([+-])?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")


def parse_when(line: ContentLine, default_tz: ZoneInfo | None, warnings: list[str],
               zones: Mapping[str, VTimezone | None] | None = None) -> When:
    value = line.value.strip()
    try:
        if line.params.get("VALUE", "").upper() == "DATE" or _DATE_RE.match(value):
            m = _DATE_RE.match(value)
            if not m:
                raise ValueError(value)
            return date(int(m[1]), int(m[2]), int(m[3]))
        m = DATETIME_RE.match(value)
        if not m:
            raise ValueError(value)
        naive = datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), min(int(m[6]), 59))
    except ValueError:
        raise InvalidRequest(f"Bad {line.name} value {value[:40]!r} (want YYYYMMDD or YYYYMMDDTHHMMSS[Z]).",
                             param="file") from None
    if m[7] == "Z":
        return naive.replace(tzinfo=UTC)
    tzid = line.params.get("TZID")
    if tzid:
        zone = zone_named(tzid, zones or {})
        if zone is not None:
            return naive.replace(tzinfo=zone)
        why = "its VTIMEZONE has rules we cannot follow" if (zones or {}).get(tzid, 0) is None else "unknown"
        warnings.append(f"time zone {tzid!r} in {line.name} ({why}): read as "
                        f"{default_tz.key if default_tz else 'floating'} time, which may be wrong")
    return naive.replace(tzinfo=default_tz) if default_tz is not None else naive


def _parsed(lines: Iterable[str]) -> Iterator[ContentLine]:
    for raw in lines:
        try:
            yield parse_line(raw)
        except InvalidRequest:
            continue  # read_ics reports it


class Duration(NamedTuple):
    """A DURATION value: ``nominal`` (weeks and days: the same wall-clock time N days later) and ``exact`` (hours,
    minutes, seconds: elapsed time, whatever DST does), as RFC 5545 3.3.6 adds them."""

    nominal: timedelta
    exact: timedelta


def parse_duration(value: str) -> Duration:
    m = _DURATION_RE.match(value.strip().upper())
    if not m or value.strip().upper() in ("P", "PT", "-P", "+P"):
        raise InvalidRequest(f"Bad DURATION value {value[:40]!r}.", param="file")
    try:
        weeks, days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups()[1:])
        nominal = timedelta(weeks=weeks, days=days)
        exact = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    except (ValueError, OverflowError):  # more digits than int() reads, or beyond 999,999,999 days
        raise InvalidRequest(f"DURATION value {value[:40]!r} is too long.", param="file") from None
    return Duration(-nominal, -exact) if m[1] == "-" else Duration(nominal, exact)


def add_duration(start: When, duration: Duration) -> When:
    """``start`` plus a DURATION: the days on the wall clock, then the hours as elapsed time."""
    if not isinstance(start, datetime):
        return start + (duration.nominal + duration.exact)  # a DATE: only whole days count
    return add_exact(start + duration.nominal, duration.exact)


def _address(line: ContentLine) -> str:
    value = line.value.strip()
    if value.lower().startswith("mailto:"):
        value = value[7:]
    cn = line.params.get("CN")
    if value.endswith("@invalid") and cn:
        return cn
    return value or (cn or "")


def read_ics(text: str | bytes, *, default_tz: ZoneInfo | None = None) -> list[IcsItem]:
    """Events and to-dos of a VCALENDAR. Raises InvalidRequest on input that is not iCalendar."""
    if isinstance(text, bytes):
        if len(text) > MAX_ICS_BYTES:
            raise InvalidRequest(f"The calendar file is larger than {MAX_ICS_BYTES // (1024 * 1024)} MB.",
                                 param="file")
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidRequest("The calendar file is not valid UTF-8.", param="file") from None
    if len(text) > MAX_ICS_BYTES:
        raise InvalidRequest("The calendar file is too large.", param="file")
    lines = unfold(text)
    if not lines or lines[0].strip().upper() != "BEGIN:VCALENDAR":
        raise InvalidRequest("Not an iCalendar file: it must start with BEGIN:VCALENDAR.", param="file")
    # A TZID may be defined after the events that use it: the VTIMEZONEs are read first.
    zones = read_timezones(_parsed(lines)) if any(x[:16].upper() == "BEGIN:VTIMEZONE" for x in lines) else {}
    items: list[IcsItem] = []
    stack: list[str] = []
    current: IcsItem | None = None
    duration: Duration | None = None
    for raw in lines:
        line = parse_line(raw)
        if line.name == "BEGIN":
            stack.append(line.value.strip().upper())
            if stack[-1] in ("VEVENT", "VTODO") and current is None:
                current = IcsItem(summary="", kind=stack[-1])  # type: ignore[arg-type]
                current.uid = ""
                duration = None
            continue
        if line.name == "END":
            name = line.value.strip().upper()
            if not stack or stack[-1] != name:
                raise InvalidRequest(f"Unbalanced END:{name} in the calendar file.", param="file")
            stack.pop()
            if current is not None and name == current.kind and not any(s in ("VEVENT", "VTODO") for s in stack):
                _finish(current, duration)
                items.append(current)
                current = None
                if len(items) > MAX_ITEMS:
                    raise InvalidRequest(f"The calendar file has more than {MAX_ITEMS} items.", param="file")
            continue
        # Only properties directly inside the VEVENT/VTODO (not its VALARM) belong to the item.
        if current is None or stack[-1] != current.kind:
            continue
        duration = _apply(current, line, default_tz, duration, zones)
    if stack:
        raise InvalidRequest(f"The calendar file ends inside {stack[-1]} (missing END).", param="file")
    return items


def _apply(item: IcsItem, line: ContentLine, default_tz: ZoneInfo | None, duration: Duration | None,
           zones: Mapping[str, VTimezone | None]) -> Duration | None:
    name = line.name
    if name == "UID":
        item.uid = unescape_text(line.value).strip()
    elif name == "SUMMARY":
        item.summary = unescape_text(line.value)
    elif name == "DESCRIPTION":
        item.description = unescape_text(line.value)
    elif name == "LOCATION":
        item.location = unescape_text(line.value)
    elif name == "DTSTART":
        item.start = parse_when(line, default_tz, item.warnings, zones)
    elif name == "DTEND":
        item.end = parse_when(line, default_tz, item.warnings, zones)
    elif name == "DUE":
        item.due = parse_when(line, default_tz, item.warnings, zones)
    elif name == "DURATION":
        return parse_duration(line.value)
    elif name == "DTSTAMP":
        stamp = parse_when(line, _UTC, item.warnings)
        item.dtstamp = stamp if isinstance(stamp, datetime) else None
    elif name == "ATTENDEE":
        item.attendees.append(_address(line))
    elif name == "ORGANIZER":
        item.organizer = _address(line)
    elif name == "STATUS":
        item.status = unescape_text(line.value).strip().upper()
    elif name == "CATEGORIES":
        item.categories.extend(c.strip() for c in _split_unescaped(line.value) if c.strip())
    elif name == "RRULE":
        item.rrule = line.value.strip()
    elif name == "RECURRENCE-ID":
        item.recurrence_id = parse_when(line, default_tz, item.warnings, zones)
    return duration


def _split_unescaped(value: str) -> list[str]:
    parts = re.split(r"(?<!\\),", value)
    return [unescape_text(p) for p in parts]


def _finish(item: IcsItem, duration: Duration | None) -> None:
    if not item.uid:
        # RFC 5545 requires a UID; derive a stable one so re-importing the same file stays idempotent.
        basis = f"{item.kind}|{item.summary}|{item.start}|{item.end}|{item.due}"
        item.uid = hashlib.sha256(basis.encode()).hexdigest()[:24] + "@imported"
    try:
        if duration is not None and item.start is not None:
            if item.kind == "VEVENT" and item.end is None:
                item.end = add_duration(item.start, duration)
            elif item.kind == "VTODO" and item.due is None:
                item.due = add_duration(item.start, duration)
        if item.kind == "VEVENT" and item.end is None and item.start is not None:
            # RFC 5545 3.6.1: no DTEND/DURATION → a DATE lasts one day, a DATE-TIME is an instant.
            item.end = item.start + timedelta(days=1) if not isinstance(item.start, datetime) else item.start
    except OverflowError:
        raise InvalidRequest(f"{item.kind} {item.uid[:80]!r}: DTSTART {item.start} plus its duration is past the "
                             "last representable date (9999-12-31).", param="file") from None
