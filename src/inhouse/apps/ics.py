"""iCalendar (RFC 5545) writer and reader for events (VEVENT) and to-dos (VTODO).

Writing: CRLF line ends, lines folded at 75 octets on UTF-8 character boundaries, TEXT values escaped
(``\\ ; , newline``), one ``UID`` and ``DTSTAMP`` per component. A person given by name only gets a placeholder
address (``mailto:mei.lin@invalid``; a name that is not plain ASCII letters, such as 张伟, gets ``u-`` and a hash of
the name, so two people never share one address) and the name in ``CN``. Aware date-times are written in UTC with a
``Z`` (so no VTIMEZONE blocks are needed and every client agrees on the instant); naive date-times are
"floating" (local wherever the calendar is opened); ``date`` values are all-day (``VALUE=DATE``).

Reading: unfolds lines (CRLF or bare LF), unescapes TEXT, understands ``Z`` (UTC), ``TZID=`` (an IANA zone; else
the file's own VTIMEZONE of that name, its STANDARD/DAYLIGHT offsets and yearly rules; else a Windows zone name as
Outlook and Exchange write them, "W. Europe Standard Time", mapped to IANA by ``WINDOWS_ZONES``; a zone none of these
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
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

from inhouse.apps.dates import add_exact
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


def escape_text(value: str) -> str:
    return (value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\r", "\\n").replace("\n", "\\n"))


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
        yield _prop("RRULE", item.rrule)
    if item.recurrence_id is not None:
        yield _when_prop("RECURRENCE-ID", item.recurrence_id)
    yield f"END:{item.kind}"


def _cal_address(who: str) -> str:
    who = who.strip()
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
    who = who.strip()
    if "@" in who and " " not in who:
        return ""
    name = who.replace('"', "'")
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
_DATETIME_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(Z?)$")
_DURATION_RE = re.compile(r"^([+-])?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")


# Windows time zone names (Outlook, Exchange: TZID=W. Europe Standard Time) → IANA, the zone each stands for in CLDR's
# windowsZones (territory 001), written out for the common ones. A file's own VTIMEZONE of the name wins over this.
WINDOWS_ZONES: dict[str, str] = {
    "Dateline Standard Time": "Etc/GMT+12", "UTC-11": "Etc/GMT+11", "Aleutian Standard Time": "America/Adak",
    "Hawaiian Standard Time": "Pacific/Honolulu", "Marquesas Standard Time": "Pacific/Marquesas",
    "Alaskan Standard Time": "America/Anchorage", "UTC-09": "Etc/GMT+9", "UTC-08": "Etc/GMT+8",
    "Pacific Standard Time (Mexico)": "America/Tijuana", "Pacific Standard Time": "America/Los_Angeles",
    "US Mountain Standard Time": "America/Phoenix", "Mountain Standard Time (Mexico)": "America/Mazatlan",
    "Mountain Standard Time": "America/Denver", "Yukon Standard Time": "America/Whitehorse",
    "Central America Standard Time": "America/Guatemala", "Central Standard Time": "America/Chicago",
    "Easter Island Standard Time": "Pacific/Easter", "Central Standard Time (Mexico)": "America/Mexico_City",
    "Canada Central Standard Time": "America/Regina", "SA Pacific Standard Time": "America/Bogota",
    "Eastern Standard Time (Mexico)": "America/Cancun", "Eastern Standard Time": "America/New_York",
    "Haiti Standard Time": "America/Port-au-Prince", "Cuba Standard Time": "America/Havana",
    "US Eastern Standard Time": "America/Indiana/Indianapolis", "Turks And Caicos Standard Time": "America/Grand_Turk",
    "Paraguay Standard Time": "America/Asuncion", "Atlantic Standard Time": "America/Halifax",
    "Venezuela Standard Time": "America/Caracas", "Central Brazilian Standard Time": "America/Cuiaba",
    "SA Western Standard Time": "America/La_Paz", "Pacific SA Standard Time": "America/Santiago",
    "Newfoundland Standard Time": "America/St_Johns", "Tocantins Standard Time": "America/Araguaina",
    "E. South America Standard Time": "America/Sao_Paulo", "SA Eastern Standard Time": "America/Cayenne",
    "Argentina Standard Time": "America/Argentina/Buenos_Aires", "Montevideo Standard Time": "America/Montevideo",
    "Magallanes Standard Time": "America/Punta_Arenas", "Saint Pierre Standard Time": "America/Miquelon",
    "Bahia Standard Time": "America/Bahia", "UTC-02": "Etc/GMT+2", "Mid-Atlantic Standard Time": "Etc/GMT+2",
    "Azores Standard Time": "Atlantic/Azores", "Cape Verde Standard Time": "Atlantic/Cape_Verde", "UTC": "Etc/UTC",
    "GMT Standard Time": "Europe/London", "Greenwich Standard Time": "Atlantic/Reykjavik",
    "Sao Tome Standard Time": "Africa/Sao_Tome", "Morocco Standard Time": "Africa/Casablanca",
    "W. Europe Standard Time": "Europe/Berlin", "Central Europe Standard Time": "Europe/Budapest",
    "Romance Standard Time": "Europe/Paris", "Central European Standard Time": "Europe/Warsaw",
    "W. Central Africa Standard Time": "Africa/Lagos", "Jordan Standard Time": "Asia/Amman",
    "GTB Standard Time": "Europe/Bucharest", "Middle East Standard Time": "Asia/Beirut",
    "Egypt Standard Time": "Africa/Cairo", "E. Europe Standard Time": "Europe/Chisinau",
    "Syria Standard Time": "Asia/Damascus", "West Bank Standard Time": "Asia/Hebron",
    "South Africa Standard Time": "Africa/Johannesburg", "FLE Standard Time": "Europe/Kiev",
    "Israel Standard Time": "Asia/Jerusalem", "South Sudan Standard Time": "Africa/Juba",
    "Kaliningrad Standard Time": "Europe/Kaliningrad", "Sudan Standard Time": "Africa/Khartoum",
    "Libya Standard Time": "Africa/Tripoli", "Namibia Standard Time": "Africa/Windhoek",
    "Arabic Standard Time": "Asia/Baghdad", "Turkey Standard Time": "Europe/Istanbul",
    "Arab Standard Time": "Asia/Riyadh", "Belarus Standard Time": "Europe/Minsk",
    "Russian Standard Time": "Europe/Moscow", "E. Africa Standard Time": "Africa/Nairobi",
    "Volgograd Standard Time": "Europe/Volgograd", "Iran Standard Time": "Asia/Tehran",
    "Arabian Standard Time": "Asia/Dubai", "Astrakhan Standard Time": "Europe/Astrakhan",
    "Azerbaijan Standard Time": "Asia/Baku", "Russia Time Zone 3": "Europe/Samara",
    "Mauritius Standard Time": "Indian/Mauritius", "Saratov Standard Time": "Europe/Saratov",
    "Georgian Standard Time": "Asia/Tbilisi", "Caucasus Standard Time": "Asia/Yerevan",
    "Afghanistan Standard Time": "Asia/Kabul", "West Asia Standard Time": "Asia/Tashkent",
    "Ekaterinburg Standard Time": "Asia/Yekaterinburg", "Pakistan Standard Time": "Asia/Karachi",
    "Qyzylorda Standard Time": "Asia/Qyzylorda", "India Standard Time": "Asia/Kolkata",
    "Sri Lanka Standard Time": "Asia/Colombo", "Nepal Standard Time": "Asia/Kathmandu",
    "Central Asia Standard Time": "Asia/Bishkek", "Bangladesh Standard Time": "Asia/Dhaka",
    "Omsk Standard Time": "Asia/Omsk", "Myanmar Standard Time": "Asia/Yangon",
    "SE Asia Standard Time": "Asia/Bangkok", "Altai Standard Time": "Asia/Barnaul",
    "W. Mongolia Standard Time": "Asia/Hovd", "North Asia Standard Time": "Asia/Krasnoyarsk",
    "N. Central Asia Standard Time": "Asia/Novosibirsk", "Tomsk Standard Time": "Asia/Tomsk",
    "China Standard Time": "Asia/Shanghai", "North Asia East Standard Time": "Asia/Irkutsk",
    "Singapore Standard Time": "Asia/Singapore", "W. Australia Standard Time": "Australia/Perth",
    "Taipei Standard Time": "Asia/Taipei", "Ulaanbaatar Standard Time": "Asia/Ulaanbaatar",
    "Aus Central W. Standard Time": "Australia/Eucla", "Transbaikal Standard Time": "Asia/Chita",
    "Tokyo Standard Time": "Asia/Tokyo", "North Korea Standard Time": "Asia/Pyongyang",
    "Korea Standard Time": "Asia/Seoul", "Yakutsk Standard Time": "Asia/Yakutsk",
    "Cen. Australia Standard Time": "Australia/Adelaide", "AUS Central Standard Time": "Australia/Darwin",
    "E. Australia Standard Time": "Australia/Brisbane", "AUS Eastern Standard Time": "Australia/Sydney",
    "West Pacific Standard Time": "Pacific/Port_Moresby", "Tasmania Standard Time": "Australia/Hobart",
    "Vladivostok Standard Time": "Asia/Vladivostok", "Lord Howe Standard Time": "Australia/Lord_Howe",
    "Bougainville Standard Time": "Pacific/Bougainville", "Russia Time Zone 10": "Asia/Srednekolymsk",
    "Magadan Standard Time": "Asia/Magadan", "Norfolk Standard Time": "Pacific/Norfolk",
    "Sakhalin Standard Time": "Asia/Sakhalin", "Central Pacific Standard Time": "Pacific/Guadalcanal",
    "Russia Time Zone 11": "Asia/Kamchatka", "New Zealand Standard Time": "Pacific/Auckland",
    "UTC+12": "Etc/GMT-12", "Fiji Standard Time": "Pacific/Fiji", "Chatham Islands Standard Time": "Pacific/Chatham",
    "UTC+13": "Etc/GMT-13", "Tonga Standard Time": "Pacific/Tongatapu", "Samoa Standard Time": "Pacific/Apia",
    "Line Islands Standard Time": "Pacific/Kiritimati",
}


def parse_when(line: ContentLine, default_tz: ZoneInfo | None, warnings: list[str],
               zones: Mapping[str, VTimezone | None] | None = None) -> When:
    value = line.value.strip()
    try:
        if line.params.get("VALUE", "").upper() == "DATE" or _DATE_RE.match(value):
            m = _DATE_RE.match(value)
            if not m:
                raise ValueError(value)
            return date(int(m[1]), int(m[2]), int(m[3]))
        m = _DATETIME_RE.match(value)
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
        zone = _zone(tzid, zones or {})
        if zone is not None:
            return naive.replace(tzinfo=zone)
        why = "its VTIMEZONE has rules we cannot follow" if (zones or {}).get(tzid, 0) is None else "unknown"
        warnings.append(f"time zone {tzid!r} in {line.name} ({why}): read as "
                        f"{default_tz.key if default_tz else 'floating'} time, which may be wrong")
    return naive.replace(tzinfo=default_tz) if default_tz is not None else naive


def _zone(tzid: str, zones: Mapping[str, VTimezone | None]) -> tzinfo | None:
    """An IANA name; else the file's own VTIMEZONE; else a Windows name (Outlook writes no IANA names)."""
    # Some exporters write "/Europe/Paris" or a vendor prefix before the IANA name.
    candidates = [tzid, tzid.lstrip("/")]
    if "/" in tzid:
        parts = tzid.strip("/").split("/")
        candidates.append("/".join(parts[-2:]))
    for c in candidates:
        try:
            return ZoneInfo(c)
        except (KeyError, ValueError, OSError):
            continue
    own = zones.get(tzid)
    if own is not None:
        return own
    windows = WINDOWS_ZONES.get(tzid.strip())
    return ZoneInfo(windows) if windows else None

@dataclass(frozen=True)
class _Observance:
    """One STANDARD or DAYLIGHT part of a VTIMEZONE: from each onset on (wall clock, before the change), the offset is
    ``offset_to``. Onsets: DTSTART, the RDATEs, and a yearly rule (``month``, ``nth`` weekday, or the weekday among
    ``monthdays``) until ``until``."""

    start: datetime
    offset_from: timedelta
    offset_to: timedelta
    month: int = 0  # 0: no yearly rule
    weekday: int = 0
    nth: int = 0  # 1..5, -1 last; 0 with ``monthdays``
    monthdays: tuple[int, ...] = ()
    until: datetime | None = None
    rdates: tuple[datetime, ...] = ()

    def onsets(self, year: int) -> Iterator[datetime]:
        for d in (self.start, *self.rdates):
            if d.year == year:
                yield d
        if not self.month or year < self.start.year:
            return
        first = date(year, self.month, 1)
        days = [first + timedelta(days=i) for i in range(31) if (first + timedelta(days=i)).month == self.month]
        matches = [d for d in days if d.weekday() == self.weekday and (not self.monthdays or d.day in self.monthdays)]
        if not matches or (self.nth and abs(self.nth) > len(matches)):
            return
        day = matches[self.nth - 1 if self.nth > 0 else self.nth] if self.nth else matches[0]
        onset = datetime.combine(day, self.start.time())
        if onset >= self.start and (self.until is None or onset <= self.until):
            yield onset


class VTimezone(tzinfo):
    """A VTIMEZONE of the file itself (the definition RFC 5545 says a ``TZID`` refers to), for zones that are not
    IANA names: Outlook's "W. Europe Standard Time", or "(UTC+01:00) Amsterdam, Berlin…"."""

    def __init__(self, tzid: str, observances: list[_Observance]) -> None:
        self.tzid = tzid
        self.observances = observances
        self._years: dict[int, list[tuple[datetime, _Observance]]] = {}  # the onsets of a year, in order

    def _onsets(self, year: int) -> list[tuple[datetime, _Observance]]:
        found = self._years.get(year)
        if found is None:
            found = sorted(((o, ob) for ob in self.observances for o in ob.onsets(year)), key=lambda x: x[0])
            if len(self._years) < 1000:
                self._years[year] = found
        return found

    def _at(self, wall: datetime) -> tuple[_Observance | None, timedelta]:
        # The latest onset at or before this wall-clock time, this year or the last.
        for year in (wall.year, wall.year - 1):
            before = [ob for onset, ob in self._onsets(year) if onset <= wall]
            if before:
                return before[-1], before[-1].offset_to
        # No change in two years (a zone without rules, or whose rules ended): the latest dated onset before.
        dated = [(d, ob) for ob in self.observances for d in (ob.start, *ob.rdates) if d <= wall]
        if dated:
            ob = max(dated, key=lambda x: x[0])[1]
            return ob, ob.offset_to
        first = min(self.observances, key=lambda o: o.start)  # before every onset: the offset the first one left
        return None, first.offset_from

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return self._at(dt.replace(tzinfo=None))[1] if dt is not None else self.observances[0].offset_to

    def dst(self, dt: datetime | None) -> timedelta:
        if dt is None:
            return timedelta(0)
        ob, offset = self._at(dt.replace(tzinfo=None))
        standard = min((o.offset_to for o in self.observances), default=offset)
        return offset - standard if ob is not None else timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return self.tzid

    def fromutc(self, dt: datetime) -> datetime:
        naive = dt.replace(tzinfo=None)
        for offset in sorted({o.offset_to for o in self.observances} | {o.offset_from for o in self.observances}):
            if self.utcoffset(naive + offset) == offset:
                return (naive + offset).replace(tzinfo=self)
        return (naive + self.utcoffset(naive)).replace(tzinfo=self)

    def __repr__(self) -> str:
        return f"VTimezone({self.tzid!r})"


_OFFSET_RE = re.compile(r"^([+-])(\d{2})(\d{2})(\d{2})?$")
_WEEKDAYS = {"MO": 0, "TU": 1, "WE": 2, "TH": 3, "FR": 4, "SA": 5, "SU": 6}


def _offset(value: str) -> timedelta:
    m = _OFFSET_RE.match(value.strip())
    if not m:
        raise ValueError(value)
    delta = timedelta(hours=int(m[2]), minutes=int(m[3]), seconds=int(m[4] or 0))
    return -delta if m[1] == "-" else delta


def _local(value: str) -> datetime:
    m = _DATETIME_RE.match(value.strip())
    if not m:
        raise ValueError(value)
    return datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), min(int(m[6]), 59))


def _observance(props: dict[str, list[str]]) -> _Observance:
    """``ValueError`` for what it cannot follow exactly (a rule that is not yearly by month and weekday)."""
    start, off_from, off_to = _local(props["DTSTART"][0]), _offset(props["TZOFFSETFROM"][0]), \
        _offset(props["TZOFFSETTO"][0])
    rdates = tuple(_local(v) for line in props.get("RDATE", []) for v in line.split(",") if "T" in v)
    rules = props.get("RRULE", [])
    if not rules:
        return _Observance(start, off_from, off_to, rdates=rdates)
    parts = dict(p.split("=", 1) for p in rules[0].upper().split(";") if "=" in p)
    if len(rules) > 1 or parts.pop("FREQ", "") != "YEARLY" or not set(parts) <= {"BYMONTH", "BYDAY", "BYMONTHDAY",
                                                                                  "UNTIL", "INTERVAL", "WKST"}:
        raise ValueError(rules[0])
    if parts.get("INTERVAL", "1") != "1":
        raise ValueError(rules[0])
    day = re.fullmatch(r"([+-]?\d)?(MO|TU|WE|TH|FR|SA|SU)", parts.get("BYDAY", ""))
    if not day or not parts.get("BYMONTH", "").isdigit():
        raise ValueError(rules[0])
    monthdays = tuple(int(d) for d in parts.get("BYMONTHDAY", "").split(",") if d)
    until = _local(parts["UNTIL"].rstrip("Z") + ("T000000" if "T" not in parts["UNTIL"] else "")) \
        if "UNTIL" in parts else None
    return _Observance(start, off_from, off_to, int(parts["BYMONTH"]), _WEEKDAYS[day[2]],
                       int(day[1]) if day[1] else 0, monthdays, until, rdates)


def read_timezones(lines: Iterable[str]) -> dict[str, VTimezone | None]:
    """The VTIMEZONE blocks of a calendar by TZID; None for one whose rules cannot be followed exactly."""
    zones: dict[str, VTimezone | None] = {}
    tzid: str | None = None
    observances: list[_Observance] = []
    props: dict[str, list[str]] | None = None
    broken = False
    for raw in lines:
        try:
            line = parse_line(raw)
        except InvalidRequest:
            continue  # read_ics reports it
        value = line.value.strip()
        if line.name == "BEGIN" and value.upper() == "VTIMEZONE":
            tzid, observances, broken = "", [], False
        elif tzid is None:
            continue
        elif line.name == "BEGIN" and value.upper() in ("STANDARD", "DAYLIGHT"):
            props = {}
        elif line.name == "END" and value.upper() in ("STANDARD", "DAYLIGHT") and props is not None:
            try:
                observances.append(_observance(props))
            except (KeyError, ValueError, IndexError):
                broken = True
            props = None
        elif line.name == "END" and value.upper() == "VTIMEZONE":
            if tzid:
                zones[tzid] = None if broken or not observances else VTimezone(tzid, observances)
            tzid = None
        elif props is not None:
            props.setdefault(line.name, []).append(value)
        elif line.name == "TZID":
            tzid = value
    return zones


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
    zones = read_timezones(lines) if any(x[:16].upper() == "BEGIN:VTIMEZONE" for x in lines) else {}
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
