"""`first_blocked`: whether a system unit's account can reach a path, judged from its uid, its groups and each
directory's mode and owner on real directories (no user is switched). Before 2026-12-07 `service install --system
--run-as` handed a data directory under a 0700 directory (root's home) to the account, and the service failed every
start with "unable to open database file"."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inhouse.deploy.systemd import Account, first_blocked

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown of test directories needs root")

STRANGER = Account("svc", 4242, frozenset({4242}))
MEMBER = Account("svc", 4242, frozenset({4242, 4343}))


def _dir(path: Path, mode: int, uid: int | None = None, gid: int | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    if uid is not None or gid is not None:
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    return path


def test_a_closed_directory_on_the_way_is_named(open_dir: Path) -> None:
    closed = _dir(open_dir / "home", 0o700)
    data = _dir(closed / "inhouse" / "data", 0o755)
    blocked = first_blocked(STRANGER, data.parent)
    assert blocked is not None and blocked.startswith(f"{closed} (drwx------ ")


def test_an_open_chain_is_reachable(open_dir: Path) -> None:
    data = _dir(open_dir / "srv" / "inhouse", 0o755)
    assert first_blocked(STRANGER, data) is None


def test_the_owner_and_group_bits_count_for_the_owner_and_members_only(open_dir: Path) -> None:
    group_only = _dir(open_dir / "group", 0o710, uid=0, gid=4343)
    assert first_blocked(MEMBER, group_only) is None
    assert first_blocked(STRANGER, group_only) is not None
    # the owner's own bits decide for the owner, however open the others' are (as the kernel checks)
    owner_shut = _dir(open_dir / "owner", 0o077, uid=4242)
    assert first_blocked(STRANGER, owner_shut) is not None


def test_a_file_is_judged_by_what_is_wanted_of_it(open_dir: Path) -> None:
    script = open_dir / "inhouse"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o700)
    assert first_blocked(STRANGER, script, os.R_OK | os.X_OK) is not None
    script.chmod(0o755)
    assert first_blocked(STRANGER, script, os.R_OK | os.X_OK) is None


def test_a_symbolic_link_into_a_closed_directory_is_followed(open_dir: Path) -> None:
    inside = _dir(_dir(open_dir / "root-home", 0o700) / "venv", 0o755)
    (open_dir / "opt").symlink_to(inside)
    assert first_blocked(STRANGER, open_dir / "opt" / "bin")  # as written it looks open; resolved, it is not


def test_directories_not_made_yet_are_judged_as_this_process_will_make_them(open_dir: Path) -> None:
    before = os.umask(0o077)
    try:
        blocked = first_blocked(STRANGER, open_dir / "new" / "deeper")
    finally:
        os.umask(before)
    assert blocked is not None and blocked.startswith(f"{open_dir / 'new'} (drwx------ ")
    before = os.umask(0o022)
    try:
        assert first_blocked(STRANGER, open_dir / "new" / "deeper") is None
    finally:
        os.umask(before)
