"""Which weight path the engine loads models with: ``engine.weight_buffers`` resolved against the probe.

* ``auto`` (the default) takes the fastest path the probe proved, in this order: ``amx`` (only where the AMX
  path executed and agreed with plain), ``repack`` (the CPU repack without AMX), ``plain``.
* A forced value (``amx``, ``repack``, ``plain``) is used as given when the probe proved it, and refused
  with a clear error when the probe refuted it (crashed or computed wrong results), unless
  ``engine.force_weight_buffers`` is set — then it is used anyway, and the log says so.
* A value from a tuned profile that the probe now refutes (a rebuilt library, a changed host) falls back to
  ``auto`` with a warning instead: a stale profile must never stop a server.

Every answer carries its reason in words, printed once per model load (log), by ``inhouse models list``
and ``inhouse status``, and on the admin page.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from inhouse.config import EngineSettings
from inhouse.errors import EngineFailure, InvalidRequest
from inhouse.hardware.probe import PathResult, ProbeReport

CHOICES = ("auto", "amx", "repack", "plain")


@dataclass(frozen=True)
class WeightChoice:
    value: str  # amx | repack | plain: what the backend is given
    reason: str
    requested: str = "auto"

    def to_dict(self) -> dict[str, str]:
        return {"value": self.value, "requested": self.requested, "reason": self.reason}


def _refuted(report: ProbeReport, path: str) -> str | None:
    r = report.paths.get(path)
    if r is None or r.status not in ("crashed", "wrong"):
        return None
    return r.detail


def auto_choice(report: ProbeReport) -> WeightChoice:
    amx = report.amx_verdict()
    if report.amx_in_use:
        return WeightChoice("amx", f"auto: {amx} AMX weight buffers are the fastest path.")
    if report.works("repack"):
        what = ("the CPU repack (AVX2/AVX-512 interleaved Q4_0/Q4_K) ran and agreed with plain"
                if report.repack_in_use else "the repack path ran (this build repacks none of the probe's formats)")
        return WeightChoice("repack", f"auto: {amx} Using extra buffers without AMX: {what}.")
    if report.works("plain"):
        why = _refuted(report, "repack") or (report.paths["repack"].detail if "repack" in report.paths else "")
        return WeightChoice("plain", f"auto: {amx} The CPU repack failed too ({why}); plain weights only.")
    plain = report.paths.get("plain")
    detail = plain.detail if plain is not None else "not probed"
    raise EngineFailure(f"llama.cpp does not run on this machine even without extra weight buffers ({detail}). "
                        "Run `inhouse doctor --refresh`; the llama.cpp build may not match this CPU "
                        "(re-run scripts/setup.sh).", code="hardware_unusable")


def resolve_weight_buffers(requested: str, report: ProbeReport | None, *, force: bool = False,
                           from_profile: bool = False) -> WeightChoice:
    """The weight path to load with, and why. ``report`` None means no probe could be read: ``auto`` then
    keeps llama.cpp's own default only when forced, else the safe ``plain``."""
    if requested not in CHOICES:
        raise InvalidRequest(f"engine.weight_buffers must be one of {', '.join(CHOICES)}, got {requested!r}.")
    if report is None:
        if requested == "auto":
            return WeightChoice("plain", "auto: no hardware probe answer is available; plain weights are the "
                                         "path that needs no proof (run `inhouse doctor`).")
        return WeightChoice(requested, f"{requested}: set explicitly; not checked (no hardware probe answer).",
                            requested)
    if requested == "auto":
        return auto_choice(report)
    refuted = _refuted(report, requested)
    if refuted is None:
        note = ""
        if requested == "amx" and not report.amx_in_use:
            note = f" {report.amx_verdict()} Without AMX this is the CPU repack."
        return WeightChoice(requested, f"{requested}: set explicitly and proven by the probe.{note}", requested)
    if force:
        return WeightChoice(requested, f"{requested}: FORCED although the probe refuted it ({refuted}); the engine "
                                       "may crash or compute wrong results.", requested)
    if from_profile:
        fallback = auto_choice(report)
        return WeightChoice(fallback.value, f"the tuned profile asks for {requested}, but the probe refuted it "
                                            f"({refuted}); {fallback.reason}", requested)
    raise InvalidRequest(f"engine.weight_buffers={requested!r} is refuted on this machine: {refuted}. Use 'auto', "
                         "or set engine.force_weight_buffers=true to use it anyway.",
                         code="weight_buffers_refuted")


def resolve_engine_settings(settings: EngineSettings, report: ProbeReport | None, *,
                            from_profile: bool = False) -> tuple[EngineSettings, WeightChoice]:
    """``settings`` with ``weight_buffers`` resolved to what the backend is given (amx/repack/plain): the
    one place the setting meets the probe. The result travels whole to wherever the engine is built."""
    choice = resolve_weight_buffers(settings.weight_buffers, report, force=settings.force_weight_buffers,
                                    from_profile=from_profile)
    return settings.model_copy(update={"weight_buffers": choice.value}), choice


def proven_paths(report: ProbeReport) -> tuple[str, ...]:
    """The weight paths worth measuring (``inhouse tune``): those the probe saw run and agree, AMX only where
    its buffers were really used (elsewhere ``amx`` is the repack path again)."""
    out = ["amx"] if report.amx_in_use else []
    out += [p for p in ("repack", "plain") if report.works(p)]
    return tuple(out)


# A served engine that dies of one of these signals died in native code: on an accelerated weight path that
# is what issue 11's AMX miscompile looked like. SIGKILL (the OOM killer, an operator) and exits say nothing
# about the path and demote nothing.
NATIVE_CRASHES = ("SIGSEGV", "SIGILL", "SIGBUS", "SIGFPE")
# The paths a crash on one path rules out too: the AMX path carries the CPU repack buffers as well.
_RULED_OUT = {"amx": ("amx",), "repack": ("repack", "amx"), "plain": ()}


class WeightDemotions:
    """Weight paths a served model's engine crashed on in this server process, per model.

    The probe proves a path on a tiny model with a one-token decode; a real model can still reach a kernel the
    probe did not. When the engine child dies in native code on ``amx`` or ``repack`` and the path was chosen
    automatically, that path (and the AMX path with the repack) counts as refuted for that model from then on:
    the restart and every later load of the model in this process resolve ``weight_buffers`` as if the probe
    had seen it crash, and the reason says so. Nothing is written to the probe's cache (``inhouse doctor
    --refresh`` still re-tests the build); an explicitly set path is never demoted (the operator asked for it).
    """

    def __init__(self) -> None:
        self._by_model: dict[str, dict[str, str]] = {}

    def demote(self, model: str, path: str, why: str) -> bool:
        """Record a crash of ``model``'s engine on ``path``; False when there is nothing to demote (plain)."""
        ruled_out = _RULED_OUT.get(path, ())
        seen = self._by_model.setdefault(model, {})
        for p in ruled_out:
            seen.setdefault(p, why)
        return bool(ruled_out)

    def demoted(self, model: str) -> dict[str, str]:
        return dict(self._by_model.get(model, {}))

    def apply(self, model: str, report: ProbeReport) -> ProbeReport:
        """``report`` with this model's demoted paths marked crashed (the report itself is unchanged)."""
        seen = self._by_model.get(model)
        if not seen:
            return report
        paths = dict(report.paths)
        for p, why in seen.items():
            paths[p] = PathResult(p, "crashed", why)
        return replace(report, paths=paths)
