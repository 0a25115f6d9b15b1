"""Where a request's key is read from: only HTTP's optional whitespace around it is ignored."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from inhouse.api.auth import key_from_headers
from inhouse.errors import AuthenticationFailed


def request(*headers: tuple[bytes, bytes]) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": list(headers)})


def test_spaces_and_tabs_around_the_key_are_ignored() -> None:
    assert key_from_headers(request((b"authorization", b"Bearer \tsk-abc \t"))) == "sk-abc"
    assert key_from_headers(request((b"x-api-key", b" sk-abc"))) == "sk-abc"
    assert key_from_headers(request()) is None


@pytest.mark.parametrize("ch", ["\x1f", "\x1c", "\x0b", "\x0c", "\x85", "\xa0"])
def test_control_and_other_space_characters_stay_part_of_the_key(ch: str) -> None:
    # str.strip() would drop these, and the key with one appended authenticated as the key.
    value = ("sk-abc" + ch).encode("latin-1")
    assert key_from_headers(request((b"authorization", b"Bearer " + value))) == "sk-abc" + ch
    assert key_from_headers(request((b"x-api-key", value))) == "sk-abc" + ch


def test_other_schemes_are_refused() -> None:
    with pytest.raises(AuthenticationFailed):
        key_from_headers(request((b"authorization", b"Basic c2stYWJj")))
