"""``make_services``: the production wiring (``bootstrap.build_services``) with fakes, for the API and web tests.

FakeBackend engines (``engine``/``fake`` options go to ``build_fake_engine``), the FakeEmbedder, no packaged
catalog, a temporary data directory, the fake model loaded (as ``inhouse serve`` preloads its default), and two
keys: an admin's and a member's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pytest

from inhouse.governance.audit import AuditLog
from inhouse.services import Services
from inhouse.testing.fakes import build_fake_engine
from inhouse.testing.services import FAKE_MODEL, build_fake_services


class SecurityEvents:
    """The security events in the real audit log since the last ``clear()``."""

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit
        self._after = 0

    def clear(self) -> None:
        self._after = max((r.seq for r in self._audit.records(newest_first=True, limit=1)), default=0)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._audit.records(kind="security", after_seq=self._after))


@dataclass(frozen=True)
class AuditSinkView:
    events: SecurityEvents


@dataclass(frozen=True)
class WiredServices(Services):
    """``Services`` as ``build_services`` made them, plus the test's keys."""

    admin_key: str = ""
    member_key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def audit_sink(self) -> AuditSinkView:
        return AuditSinkView(SecurityEvents(self.audit))


ServicesFactory = Callable[..., WiredServices]


@pytest.fixture
def make_services(tmp_path: Path) -> Iterator[ServicesFactory]:
    made: list[Services] = []

    def make(server: dict[str, Any] | None = None, engine: dict[str, Any] | None = None,
             fake: dict[str, Any] | None = None, governance: dict[str, Any] | None = None,
             kb: dict[str, Any] | None = None, *, settings: dict[str, Any] | None = None,
             models: dict[str, str | None] | None = None, preload: bool = True) -> WiredServices:
        """``settings`` adds other sections; ``models`` names the registered models and their chat templates
        (default: the fake model, preloaded unless ``preload`` is false)."""
        sections = {"server": server or {}, "engine": engine or {}, "governance": governance or {}, "kb": kb or {},
                    **(settings or {})}
        services = build_fake_services(tmp_path / f"data{len(made)}", settings=sections, models=models,
                                       load_engine=lambda spec: build_fake_engine(spec.name, **(engine or {}),
                                                                                  **(fake or {})))
        made.append(services)
        if preload:
            services.registry.get_engine(FAKE_MODEL)
        _, admin = services.keys.create_key("admin", role="admin")
        _, member = services.keys.create_key("member")
        return WiredServices(**{f.name: getattr(services, f.name) for f in fields(Services)},
                            admin_key=admin, member_key=member)

    yield make
    for s in made:
        s.close()
