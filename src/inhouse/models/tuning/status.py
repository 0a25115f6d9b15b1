"""What serve does with a model's tuned profile, as `inhouse models list`, `serve`'s start-up line and `/v1/models`
report it: ``ProfileStore.match`` judges the file (valid, this CPU), ``tuned_status`` what serve makes of it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from inhouse.errors import InhouseError

if TYPE_CHECKING:
    from inhouse.config import EngineSettings
    from inhouse.models.registry import ModelRegistry
    from inhouse.models.tuning.profile import ProfileMatch


def tuned_status(match: ProfileMatch, registry: ModelRegistry, engine: EngineSettings, *,
                 verify: bool = False) -> tuple[str, str]:
    """(status, message) of what serve does with a model's profile. ``ProfileStore.match`` says "applied" when
    the file is valid and for this CPU, but serve (``tuning.profile.tuned_settings``) refuses it as a whole, and
    runs the model untuned, when its re-quantized weights are not registered and present with the pinned
    digest (``variant_missing``) or its values do not validate with these settings (``does_not_fit``).
    ``verify``: re-check the variant file's digest as serve does (cheap once it was loaded: the digest is cached)."""
    if not match.applies or match.profile is None:
        return match.status, match.message
    profile, where = match.profile, f"The tuned profile {match.path}"
    w = profile.weights
    if w is not None:
        try:
            if verify:
                registry.verified_path(w.name, w.sha256)
            elif (pinned := registry.resolve(w.name, require_present=True).sha256) != w.sha256:
                return "variant_missing", (f"{where} needs weights {w.name} with sha256 {w.sha256}, but they are "
                                           f"pinned to {pinned}; not applied, the model runs untuned.")
        except InhouseError as exc:
            return "variant_missing", (f"{where} needs weights {w.name}: {exc.message} Not applied, the model runs "
                                       f"untuned; re-run `inhouse tune {profile.model}`.")
    try:
        profile.apply(engine)
    except ValidationError as exc:
        return "does_not_fit", (f"{where} does not fit the settings ("
                                + "; ".join(str(e["msg"]) for e in exc.errors())
                                + "); not applied, the model runs untuned.")
    return match.status, match.message
