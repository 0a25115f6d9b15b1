"""The time zones a calendar file names (``TZID=``): an IANA name; else the file's own VTIMEZONE of that name, its
STANDARD/DAYLIGHT offsets and yearly rules (RFC 5545 says that is what the name refers to); else a Windows zone name
as Outlook and Exchange write them ("W. Europe Standard Time"), mapped to IANA by ``WINDOWS_ZONES``. Read by
``ics.py``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo


class ContentLine(Protocol):
    """A calendar line as ``ics.parse_line`` reads it (its name upper-cased; its value unescaped)."""

    @property
    def name(self) -> str: ...

    @property
    def value(self) -> str: ...


# An iCalendar DATE-TIME value: YYYYMMDDTHHMMSS, Z for UTC (ics.py reads them with it too).
DATETIME_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(Z?)$")

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



def zone_named(tzid: str, zones: Mapping[str, VTimezone | None]) -> tzinfo | None:
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
    m = DATETIME_RE.match(value.strip())
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


def read_timezones(lines: Iterable[ContentLine]) -> dict[str, VTimezone | None]:
    """The VTIMEZONE blocks of a calendar by TZID; None for one whose rules cannot be followed exactly."""
    zones: dict[str, VTimezone | None] = {}
    tzid: str | None = None
    observances: list[_Observance] = []
    props: dict[str, list[str]] | None = None
    broken = False
    for line in lines:
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
