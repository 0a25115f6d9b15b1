"""Tuned profiles: the engine settings ``inhouse tune`` measured best for one model file on one CPU.

A profile lives at ``<data_dir>/profiles/<model-sha256>.toml`` and is keyed by the model's sha256 (the
exact weights measured) and the CPU signature (``hardware.CpuInfo.signature``). ``inhouse serve`` applies a
profile only when both match; a profile from another CPU is ignored with a warning (its numbers describe
other hardware), and a corrupt one is refused by name and the model runs untuned: a bad file must never
stop a server from answering, nor be half-applied.

Format (version 1)::

    format = 1
    model = "smollm2-135m"          model_sha256 = "…"      cpu_signature = "…"      created_at = "…"
    [engine]   overrides of EngineSettings (n_threads, n_threads_batch, step_token_budget, n_ubatch,
               prefill_chunk, max_running, flash_attn, kv_type, weight_buffers); reason = why they won
    [weights]  variant = "smollm2-135m@q8_0", sha256 = "…", format = "q8_0"   (only when a requantized
               file won; serve then loads that file, verified against this digest)
    [measured.default] / [measured.tuned]   the figures of the before/after report
"""

from __future__ import annotations

import logging
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from inhouse.config import EngineSettings
from inhouse.errors import InhouseError, InvalidRequest
from inhouse.models.assemble import atomic_write_text

log = logging.getLogger(__name__)

PROFILE_FORMAT = 1
# The engine settings a profile may set; anything else in [engine] is refused (a typo must not pass silently).
ENGINE_KEYS: tuple[str, ...] = (
    "n_threads", "n_threads_batch", "step_token_budget", "n_ubatch", "prefill_chunk", "max_running",
    "flash_attn", "kv_type", "weight_buffers",
)
_SHA_LEN = 64


def invalid_profile(path: Path, reason: str) -> InvalidRequest:
    return InvalidRequest(f"The tuned profile {path} is invalid: {reason}. Re-run `inhouse tune` or delete it.",
                          code="invalid_tuned_profile")


@dataclass(frozen=True)
class WeightsVariant:
    """A requantized copy of the model's weights, registered in the model registry under ``name``."""

    name: str
    sha256: str
    format: str


@dataclass(frozen=True)
class TunedProfile:
    model: str
    model_sha256: str
    cpu_signature: str
    created_at: str
    engine: dict[str, Any]
    weights: WeightsVariant | None = None
    cpu: str = ""
    objective: str = ""
    measured: dict[str, dict[str, float]] = field(default_factory=dict)
    reason: str = ""  # why the sweep kept what it kept (axis, change, ratios), and the proven weight paths

    @property
    def id(self) -> str:
        return f"{self.model_sha256[:12]}@{self.cpu_signature}"

    def apply(self, settings: EngineSettings) -> EngineSettings:
        """``settings`` with this profile's engine values on top (validated as a whole), except the weight path
        when the operator set one (``engine.weight_buffers`` other than ``auto``, docs/hardware.md "Forcing a
        choice"): that is a decision about this machine the profile's measurement cannot overrule."""
        engine = dict(self.engine)
        if settings.weight_buffers != "auto":
            engine.pop("weight_buffers", None)
        return EngineSettings.model_validate({**settings.model_dump(), **engine})

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in sorted(self.engine.items())]
        if self.weights is not None:
            parts.append(f"weights={self.weights.name}")
        return ", ".join(parts)

    def to_toml(self) -> str:
        doc: dict[str, Any] = {
            "format": PROFILE_FORMAT,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "cpu_signature": self.cpu_signature,
            "cpu": self.cpu,
            "created_at": self.created_at,
            "objective": self.objective,
            "reason": self.reason,
            "engine": dict(self.engine),
        }
        if self.weights is not None:
            doc["weights"] = {"variant": self.weights.name, "sha256": self.weights.sha256,
                              "format": self.weights.format}
        if self.measured:
            doc["measured"] = {k: dict(v) for k, v in self.measured.items()}
        return "# inhouse tuned profile, written by `inhouse tune`; see docs/tuning.md\n" + dump_toml(doc)


def parse_profile(path: Path, text: str) -> TunedProfile:
    """A validated profile, or ``InvalidRequest`` (code ``invalid_tuned_profile``) naming ``path``."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise invalid_profile(path, f"not TOML ({exc})") from None
    if doc.get("format") != PROFILE_FORMAT:
        raise invalid_profile(path, f"format must be {PROFILE_FORMAT}, got {doc.get('format')!r}")
    for key in ("model", "model_sha256", "cpu_signature", "created_at"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise invalid_profile(path, f"'{key}' must be a non-empty string")
    if len(doc["model_sha256"]) != _SHA_LEN:
        raise invalid_profile(path, "'model_sha256' is not a sha256 digest")
    engine = doc.get("engine")
    if not isinstance(engine, dict):
        raise invalid_profile(path, "the [engine] table is missing")
    unknown = sorted(set(engine) - set(ENGINE_KEYS))
    if unknown:
        raise invalid_profile(path, f"unknown engine setting(s) {', '.join(unknown)}")
    try:
        EngineSettings.model_validate({**EngineSettings().model_dump(), **engine})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise invalid_profile(path, f"engine.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    weights = None
    w = doc.get("weights")
    if w is not None:
        if not isinstance(w, dict) or not all(isinstance(w.get(k), str) and w.get(k)
                                              for k in ("variant", "sha256", "format")):
            raise invalid_profile(path, "[weights] needs string 'variant', 'sha256' and 'format'")
        if len(w["sha256"]) != _SHA_LEN:
            raise invalid_profile(path, "'weights.sha256' is not a sha256 digest")
        weights = WeightsVariant(name=w["variant"], sha256=w["sha256"], format=w["format"])
    measured_raw = doc.get("measured", {})
    measured: dict[str, dict[str, float]] = {}
    if isinstance(measured_raw, dict):
        for name, table in measured_raw.items():
            if isinstance(table, dict):
                measured[name] = {k: float(v) for k, v in table.items() if isinstance(v, (int, float))}
    return TunedProfile(
        model=doc["model"], model_sha256=doc["model_sha256"], cpu_signature=doc["cpu_signature"],
        created_at=doc["created_at"], engine=dict(engine), weights=weights, cpu=str(doc.get("cpu", "")),
        objective=str(doc.get("objective", "")), measured=measured, reason=str(doc.get("reason", "")),
    )


ProfileStatus = Literal["none", "applied", "other_cpu", "invalid"]


@dataclass(frozen=True)
class ProfileMatch:
    """What serve does with a model's profile: apply it, or why not (``message`` says it in words)."""

    status: ProfileStatus
    path: Path
    profile: TunedProfile | None = None
    message: str = ""

    @property
    def applies(self) -> bool:
        return self.status == "applied" and self.profile is not None

    def to_dict(self) -> dict[str, Any] | None:
        """The ``tuned_profile`` entry of ``/v1/models`` (None when there is no profile)."""
        if self.status == "none":
            return None
        # No file paths or messages on the wire (they may be private): the status says what happened.
        out: dict[str, Any] = {"status": self.status}
        if self.profile is not None:
            p = self.profile
            out.update(id=p.id, created_at=p.created_at, cpu_signature=p.cpu_signature, engine=dict(p.engine),
                       weights=p.weights.name if p.weights else None)
        return out


class ProfileStore:
    """The profiles directory. ``cpu_signature`` is called lazily (reading /proc once is cheap, but not free)."""

    def __init__(self, directory: Path, cpu_signature: Callable[[], str],
                 cpu_summary: Callable[[], str] | None = None) -> None:
        self._dir = Path(directory)
        self._cpu_signature = cpu_signature
        self._cpu_summary = cpu_summary  # this CPU in words (``CpuInfo.summary``), for the other-CPU warning
        self._signature: str | None = None

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def cpu_signature(self) -> str:
        if self._signature is None:
            self._signature = self._cpu_signature()
        return self._signature

    def path_for(self, model_sha256: str) -> Path:
        return self._dir / f"{model_sha256}.toml"

    def read(self, path: Path) -> TunedProfile:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise invalid_profile(path, f"unreadable ({exc})") from None
        profile = parse_profile(path, text)
        if path.stem != profile.model_sha256:
            raise invalid_profile(path, "the file name is not the model_sha256 it contains")
        return profile

    def match(self, model_sha256: str | None) -> ProfileMatch:
        """The profile for these weights on this CPU, never raising (serve must start regardless)."""
        path = self.path_for(model_sha256 or "none")
        if not model_sha256 or not path.is_file():
            return ProfileMatch("none", path)
        try:
            profile = self.read(path)
        except InvalidRequest as exc:
            return ProfileMatch("invalid", path, message=exc.message)
        if profile.cpu_signature != self.cpu_signature:
            here = f"signature {self.cpu_signature}"
            if self._cpu_summary is not None:
                here = f"{self._cpu_summary()} ({here})"
            return ProfileMatch("other_cpu", path, profile,
                                f"The tuned profile {path} was measured on another CPU: "
                                f"{profile.cpu or 'not recorded'} (signature {profile.cpu_signature}); this machine: "
                                f"{here}. Ignored: run `inhouse tune` here.")
        return ProfileMatch("applied", path, profile, f"tuned profile {profile.id}: {profile.describe()}")

    def save(self, profile: TunedProfile) -> Path:
        self._dir.mkdir(parents=True, exist_ok=True)
        path = self.path_for(profile.model_sha256)
        atomic_write_text(path, profile.to_toml())
        return path

    def check_all(self) -> list[tuple[Path, str | None]]:
        """Every profile file with its problem (None when valid and for this CPU)."""
        out: list[tuple[Path, str | None]] = []
        for path in sorted(self._dir.glob("*.toml")) if self._dir.is_dir() else []:
            try:
                profile = self.read(path)
            except InvalidRequest as exc:
                out.append((path, exc.message))
                continue
            problem = None
            if profile.cpu_signature != self.cpu_signature:
                problem = f"measured on another CPU ({profile.cpu_signature}); serve ignores it"
            out.append((path, problem))
        return out


# -- a small TOML writer (the stdlib reads TOML but does not write it; our documents are flat) ------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("TOML has no place for NaN or infinity here")
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dump_toml(doc: dict[str, Any], prefix: str = "") -> str:
    """Scalars and lists first, then sub-tables as ``[a.b]`` sections (keys are plain identifiers)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, value in doc.items():
        if isinstance(value, dict):
            name = f"{prefix}{key}"
            scalars = {k: v for k, v in value.items() if not isinstance(v, dict)}
            if scalars or not value:
                out += f"\n[{name}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in scalars.items())
            subtables = {k: v for k, v in value.items() if isinstance(v, dict)}
            if subtables:
                out += dump_toml(subtables, prefix=f"{name}.")
    return out


@dataclass(frozen=True)
class TunedOutcome:
    """What a model's profile match comes to when its model loads: ``status`` is the match's, or
    ``variant_missing`` / ``does_not_fit`` when a valid profile of this CPU cannot be applied as a whole; the
    engine settings and weight file to load (untuned unless ``applied``)."""

    status: str
    message: str
    settings: EngineSettings
    path: Path


def tuned_outcome(match: ProfileMatch, settings: EngineSettings, path: Path,
                  variant_path: Callable[[str, str], Path] | None) -> TunedOutcome:
    """The one rule of what serve does with a profile (``tuned_settings`` logs it, ``models/tuning/status.py``
    reports it): applied as a whole, or not at all. ``variant_path``: the verified path of the profile's weights."""
    untuned = lambda status, message: TunedOutcome(status, message, settings, path)  # noqa: E731
    if not match.applies or match.profile is None:
        return untuned(match.status, match.message)
    profile, where, tuned_path = match.profile, f"The tuned profile {match.path}", path
    if profile.weights is not None:
        w = profile.weights
        if variant_path is None:
            return untuned("variant_missing", f"{where} needs weights {w.name} but no registry was given; not "
                                              "applied, the model runs untuned.")
        try:
            tuned_path = variant_path(w.name, w.sha256)
        except InhouseError as exc:
            return untuned("variant_missing", f"{where} needs weights {w.name}: {exc.message} Not applied, the "
                                              f"model runs untuned; re-run `inhouse tune {profile.model}`.")
    try:
        tuned = profile.apply(settings)
    except ValidationError as exc:  # with this machine's other settings (a budget below its max_running)
        return untuned("does_not_fit", f"{where} does not fit the settings ("
                                       + "; ".join(str(e["msg"]) for e in exc.errors())
                                       + "); not applied, the model runs untuned.")
    return TunedOutcome(match.status, match.message, tuned, tuned_path)


def tuned_settings(match: ProfileMatch, settings: EngineSettings, path: Path,
                   variant_path: Callable[[str, str], Path] | None) -> tuple[EngineSettings, Path]:
    """The engine settings and weight file to load, given a model's profile match. Never raises: a profile
    that cannot be applied as a whole (corrupt, another CPU, its variant missing) is reported loudly and the
    model runs untuned."""
    outcome = tuned_outcome(match, settings, path, variant_path)
    if outcome.status == "other_cpu":
        log.warning("%s", outcome.message)
    elif outcome.status == "invalid":
        log.error("%s Serving untuned.", outcome.message)
    elif outcome.status in ("variant_missing", "does_not_fit"):
        log.error("%s", outcome.message)
    elif outcome.status == "applied" and match.profile is not None:
        log.info("applied tuned profile %s (%s)", match.path, match.profile.describe())
    return outcome.settings, outcome.path
