""".ics export: an attendee given by name only gets a placeholder address of their own. Names with no ASCII letters
(张伟, 李娜, 王芳) all became ``mailto:@invalid`` (an empty local part, and one address for three people, whom
calendar programs then merge); now each gets ``u-<hash of the name>@invalid``, stable across exports, and the name
stays in ``CN``. Checked on the exported text and through the reader (a round trip gives the names back)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from inhouse.apps.ics import IcsItem, read_ics, unfold, write_ics

NAMES = ["张伟", "李娜", "王芳", "Mei Lin", "José García", "Jose Garcia", "ana@example.com"]


def exported(names: list[str]) -> list[str]:
    item = IcsItem(summary="周会", start=datetime(2027, 4, 7, 2, tzinfo=UTC), end=datetime(2027, 4, 7, 3, tzinfo=UTC),
                   uid="weekly@inhouse", attendees=names)
    text = write_ics([item], dtstamp=datetime(2027, 1, 1, tzinfo=UTC))
    return [line for line in unfold(text) if line.startswith("ATTENDEE")]


def test_every_attendee_gets_an_address_of_their_own() -> None:
    lines = exported(NAMES)
    addresses = [line.rsplit(":", 1)[1] for line in lines]
    assert len(set(addresses)) == len(NAMES), addresses
    for address in addresses:
        local, _, domain = address.partition("@")
        assert local and domain and re.fullmatch(r"[a-z0-9._-]+", local), address
    assert addresses[3] == "mei.lin@invalid" and addresses[-1] == "ana@example.com"  # as before
    assert all(a.startswith("u-") and a.endswith("@invalid") for a in addresses[:3])
    assert 'CN="张伟"' in lines[0] and 'CN="José García"' in lines[4]


def test_the_address_is_stable_and_the_name_comes_back() -> None:
    assert exported(["张伟"]) == exported(["张伟"])
    item = IcsItem(summary="x", start=datetime(2027, 4, 7, 2, tzinfo=UTC), attendees=NAMES, uid="u@inhouse")
    again = read_ics(write_ics([item]))[0]
    assert again.attendees == NAMES
