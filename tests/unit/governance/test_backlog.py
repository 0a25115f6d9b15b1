"""The spool files that keep a store's refused writes for the next process (``Spool``), one a process where several
share a data directory: named by the process, and taken over by the next only once that process is gone."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from inhouse.governance.backlog import Spool
from inhouse.governance.process import process_tag, still_running, tag_still_running, this_process
from inhouse.testing.crash import ended_process, init_process


def spool_of(process: dict[str, Any], like: Path, lines: list[dict[str, Any]]) -> Path:
    path = like.with_name(f"{like.stem}.{process_tag(process)}{like.suffix}")
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_a_process_tag_names_this_process_and_tells_when_it_is_gone() -> None:
    me = this_process()
    tag = process_tag(me)
    assert "." not in tag and tag.endswith(f"-{me['pid']}-{me['start']}")
    assert tag_still_running(tag) and still_running(me)
    gone = ended_process()
    assert not tag_still_running(process_tag(gone)) and not still_running(gone)
    assert not tag_still_running(process_tag({**me, "start": me["start"] + 1}))  # this pid, another start: reused
    for left_alone in (process_tag({**gone, "host": "another-host"}), "not-a-tag", "x-1", "-1-2", "host-a-2"):
        assert tag_still_running(left_alone), left_alone  # another host, or no tag: cannot tell, so not taken


def test_each_process_has_its_own_spool_and_takes_over_those_of_processes_that_are_gone(tmp_path: Path) -> None:
    like = tmp_path / "audit.waiting.jsonl"
    mine = Spool.of_this_process(like, "audit records")
    assert mine.path.name == f"audit.waiting.{process_tag(this_process())}.jsonl"
    gone = spool_of(ended_process(), like, [{"n": 1}, {"n": 2}])
    with gone.open("a") as f:
        f.write('{"n": 3, "cut by')  # the crash cut its last line short
    gone_too = spool_of(ended_process(), like, [{"n": 4}])
    elsewhere = spool_of({**ended_process(), "host": "other-host"}, like, [{"n": 5}])
    running = spool_of(init_process(), like, [{"n": 6}])
    like.write_text('{"n": 7}\n')  # the single server's own spool: not a process's
    mine.append([{"n": 8}])

    assert sorted(mine.orphans(like)) == sorted([gone, gone_too])
    assert mine.claim_orphans(like) == 2
    assert not gone.exists() and not gone_too.exists()
    assert sorted(item["n"] for item in mine.read()) == [1, 2, 4, 8]
    claimed = sorted(p for p in tmp_path.iterdir() if ".from-" in p.name)
    assert len(claimed) == 2 and all(process_tag(this_process()) in p.name for p in claimed)
    assert mine.orphans(like) == []  # renamed to this process's name: no other process takes them now

    mine.replace([{"n": 2}])
    assert [item["n"] for item in mine.read()] == [2] and not any(p.exists() for p in claimed)
    assert stat.S_IMODE(mine.path.stat().st_mode) == 0o600
    assert elsewhere.exists() and running.exists() and like.exists()  # left to their own processes
    mine.replace([])
    assert not mine.path.exists()


def test_a_spool_taken_over_by_a_process_that_died_is_taken_over_by_the_next(tmp_path: Path) -> None:
    like = tmp_path / "usage.waiting.jsonl"
    dead = ended_process()
    spool_of(ended_process(), like, [{"n": 1}])
    claimed_by_dead = like.with_name(f"usage.waiting.{process_tag(dead)}.from-0a1b2c3d.jsonl")
    claimed_by_dead.write_text('{"n": 2}\n')  # it had taken one over and died before its replace
    mine = Spool.of_this_process(like, "token charges")
    assert mine.claim_orphans(like) == 2
    assert sorted(item["n"] for item in mine.read()) == [1, 2]


def test_the_taken_over_spools_stay_when_this_ones_write_fails(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    like = tmp_path / "audit.waiting.jsonl"
    spool_of(ended_process(), like, [{"n": 1}])
    mine = Spool.of_this_process(like, "audit records")
    mine.claim_orphans(like)

    def full(*args: Any, **kwargs: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("inhouse.governance.backlog.os.open", full)
    mine.replace([{"n": 1}])  # logged, not raised: the kept items are in memory still
    monkeypatch.undo()
    assert [item["n"] for item in mine.read()] == [1]  # the one taken over is not lost with the failed write
