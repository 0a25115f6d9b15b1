"""Access lists name existing groups only, and a deleted group's name is taken off them (``UserDirectory.grants``,
here a fake of the knowledge base's lists): a group created later under the same name starts with nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from inhouse.errors import AuditUnavailable, InvalidRequest, StoreUnavailable
from inhouse.governance import events
from inhouse.governance.directory import UserDirectory
from inhouse.governance.events import MemoryAuditSink
from inhouse.store.sqlite.database import Database
from inhouse.store.sqlite.governance import SqliteGovernanceStore


class FakeGrants:
    """Access lists by owner id: the group names each one names."""

    def __init__(self, lists: Mapping[str, set[str]]) -> None:
        self.lists = {owner: set(names) for owner, names in lists.items()}
        self.fail: BaseException | None = None

    def forget_group(self, name: str) -> Mapping[str, Sequence[str]]:
        if self.fail is not None:
            raise self.fail
        named = sorted(o for o, names in self.lists.items() if name.lower() in {n.lower() for n in names})
        for owner in named:
            self.lists[owner] = {n for n in self.lists[owner] if n.lower() != name.lower()}
        return {"collections": [o for o in named if o.startswith("col_")],
                "documents": [o for o in named if o.startswith("doc_")]}


@pytest.fixture
def sink() -> MemoryAuditSink:
    return MemoryAuditSink()


@pytest.fixture
def grants() -> FakeGrants:
    return FakeGrants({"col_payroll": {"contractors", "hr"}, "col_wiki": {"staff"},
                       "doc_rates": {"Contractors"}})


@pytest.fixture
def directory(db: Database, sink: MemoryAuditSink, grants: FakeGrants) -> UserDirectory:
    return UserDirectory(SqliteGovernanceStore(db), audit=sink, clock=lambda: 1000.0, grants=[grants])


def test_an_access_list_may_name_existing_groups_only(directory: UserDirectory) -> None:
    hr = directory.create_group("hr")
    directory.create_group("Finance")
    # By name in any case, or by id: the directory's spelling, once each.
    assert directory.check_groups(["HR", "finance", hr.id, "hr"]) == ["hr", "Finance"]
    assert directory.check_groups([]) == []
    with pytest.raises(InvalidRequest) as err:
        directory.check_groups(["hr", "typo1", "contractors"])
    assert err.value.code == "unknown_group" and err.value.param == "access"
    assert "'typo1', 'contractors'" in err.value.message


def test_a_deleted_groups_name_is_taken_off_every_access_list_and_recorded(
        directory: UserDirectory, grants: FakeGrants, sink: MemoryAuditSink) -> None:
    group = directory.create_group("contractors")
    directory.delete_group(group.id)
    assert grants.lists == {"col_payroll": {"hr"}, "col_wiki": {"staff"}, "doc_rates": set()}
    event = sink.events[-1]
    assert event.action == events.GROUP_DELETED
    assert event.details["access_lists"] == {"collections": ["col_payroll"], "documents": ["doc_rates"]}
    again = directory.create_group("contractors")  # a new team under the old name: shared nothing
    assert again.id != group.id and not any("contractors" in names for names in grants.lists.values())


def test_a_group_whose_access_lists_cannot_be_changed_is_not_deleted(
        directory: UserDirectory, grants: FakeGrants, sink: MemoryAuditSink) -> None:
    group = directory.create_group("contractors")
    grants.fail = StoreUnavailable("the knowledge index is locked")
    with pytest.raises(StoreUnavailable):
        directory.delete_group(group.id)
    assert directory.get_group(group.id) == group and sink.events[-1].action == events.GROUP_CREATED
    # The record failing after the lists changed: the group stays, its lists no longer name it (less access).
    grants.fail, sink.fail_with = None, AuditUnavailable("audit store down")
    with pytest.raises(AuditUnavailable):
        directory.delete_group(group.id)
    assert directory.get_group(group.id) == group and grants.lists["col_payroll"] == {"hr"}
