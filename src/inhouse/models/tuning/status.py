"""What serve does with a model's tuned profile, as `inhouse models list`, `serve`'s start-up line and `/v1/models`
report it: ``ProfileStore.match`` judges the file (valid, this CPU), ``tuned_status`` what serve makes of it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from inhouse.errors import Conflict
from inhouse.models.tuning.profile import tuned_outcome

if TYPE_CHECKING:
    from inhouse.config import EngineSettings
    from inhouse.models.registry import ModelRegistry
    from inhouse.models.tuning.profile import ProfileMatch


def tuned_status(match: ProfileMatch, registry: ModelRegistry, engine: EngineSettings, *,
                 verify: bool = False) -> tuple[str, str]:
    """(status, message) of what serve does with a model's profile: ``tuning.profile.tuned_outcome``'s rule, with
    the variant's weights looked up in ``registry``. ``verify``: re-check the variant file's digest as serve does
    (cheap once it was loaded: the digest is cached); else only that the name is present and pinned to it."""

    def pinned(name: str, sha256: str) -> Path:
        spec = registry.resolve(name, require_present=True)
        if spec.sha256 != sha256 or spec.path is None:
            raise Conflict(f"its sha256 is {sha256}, but '{name}' is pinned to {spec.sha256}.")
        return spec.path

    outcome = tuned_outcome(match, engine, Path(), registry.verified_path if verify else pinned)
    return outcome.status, outcome.message
