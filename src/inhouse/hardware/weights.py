"""Which weight path the engine loads models with: ``engine.weight_buffers`` resolved against the probe.

* ``auto`` (the default) takes the fastest path the probe proved, in this order: ``amx`` (only where the AMX
  path executed and agreed with plain), ``repack`` (the CPU repack without AMX), ``plain``.
* A forced value (``amx``, ``repack``, ``plain``) is used as given when the probe proved it, and refused
  with a clear error when the probe refuted it (crashed or computed wrong results), unless
  ``engine.force_weight_buffers`` is set — then it is used anyway, and the log says so.
* A value from a tuned profile is an automatic choice: an operator's own ``weight_buffers`` wins over it
  (``TunedProfile.apply``), and one the probe now refutes or has no answer about (a rebuilt library, a changed
  host) falls back to ``auto`` with a warning instead: a stale profile must never stop a server.
* A path whose child gave no answer (``failed``: a kill from outside, a timeout) is proven in neither direction:
  ``auto`` does not take it, and with no answer about ``plain`` either, ``auto`` serves on ``plain`` and says to
  run ``inhouse doctor --refresh``. Only a ``plain`` path refuted for good (crashed, wrong) stops the engine.

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
    # Chosen by inhouse (``auto``, a tuned profile) rather than set by the operator: a native crash of the served
    # engine on it demotes it (``WeightDemotions``); an operator's own choice is never second-guessed.
    automatic: bool = True

    def to_dict(self) -> dict[str, str]:
        return {"value": self.value, "requested": self.requested, "reason": self.reason}


def _refuted(report: ProbeReport, path: str) -> str | None:
    r = report.paths.get(path)
    if r is None or r.status not in ("crashed", "wrong"):
        return None
    return r.detail


def _unanswered(report: ProbeReport, path: str) -> str | None:
    """Why the probe has no answer about ``path`` (its child was killed from outside, timed out, failed, or had no
    plain reference), None when it has one (ok, crashed or wrong)."""
    r = report.paths.get(path)
    if r is None:
        return "not probed"
    return (r.detail or "no answer") if r.status == "failed" else None


def auto_choice(report: ProbeReport) -> WeightChoice:
    amx = report.amx_verdict()
    if report.amx_in_use:
        return WeightChoice("amx", f"auto: {amx} AMX weight buffers are the fastest path.")
    if report.works("repack"):
        what = ("the CPU repack (AVX2/AVX-512 interleaved Q4_0/Q4_K) ran and agreed with plain"
                if report.repack_in_use else "the repack path ran (this build repacks none of the probe's formats)")
        return WeightChoice("repack", f"auto: {amx} Using extra buffers without AMX: {what}.")
    if report.works("plain"):
        unanswered = _unanswered(report, "repack")
        if unanswered is not None:
            return WeightChoice("plain", f"auto: {amx} The hardware probe got no answer about the CPU repack "
                                         f"({unanswered}); plain weights until `inhouse doctor --refresh` proves it.")
        why = _refuted(report, "repack") or ""
        return WeightChoice("plain", f"auto: {amx} The CPU repack failed too ({why}); plain weights only.")
    unanswered = _unanswered(report, "plain")
    if unanswered is not None:
        # A kill from outside or a timeout says nothing about llama.cpp: plain needs no proof, and refusing to
        # serve would turn one stuck child into an outage.
        return WeightChoice("plain", f"auto: the hardware probe got no answer about the plain path ({unanswered}), "
                                     "so no weight path is proven; plain weights need no proof. Run `inhouse "
                                     "doctor --refresh` to probe again.")
    detail = report.paths["plain"].detail  # crashed or wrong: refuted for good
    raise EngineFailure(f"llama.cpp does not run on this machine even without extra weight buffers ({detail}). "
                        "Run `inhouse doctor --refresh`; the llama.cpp build may not match this CPU "
                        "(re-run scripts/setup.sh).", code="hardware_unusable")


def resolve_weight_buffers(requested: str, report: ProbeReport | None, *, force: bool = False,
                           from_profile: bool = False) -> WeightChoice:
    """The weight path to load with, and why. ``report`` None means no probe could be read: ``auto`` then
    keeps llama.cpp's own default only when forced, else the safe ``plain``. ``from_profile``: ``requested``
    is a tuned profile's value, an automatic choice that falls back to ``auto`` where the probe does not prove it."""
    if requested not in CHOICES:
        raise InvalidRequest(f"engine.weight_buffers must be one of {', '.join(CHOICES)}, got {requested!r}.")
    if report is None:
        if requested == "auto":
            return WeightChoice("plain", "auto: no hardware probe answer is available; plain weights are the "
                                         "path that needs no proof (run `inhouse doctor`).")
        where = "from the tuned profile" if from_profile else "set explicitly"
        return WeightChoice(requested, f"{requested}: {where}; not checked (no hardware probe answer).",
                            requested, automatic=from_profile)
    if requested == "auto":
        return auto_choice(report)
    refuted = _refuted(report, requested)
    unanswered = _unanswered(report, requested) if refuted is None else None
    if refuted is None and unanswered is None:
        note = ""
        if requested == "amx" and not report.amx_in_use:
            note = f" {report.amx_verdict()} Without AMX this is the CPU repack."
        if from_profile:
            return WeightChoice(requested, f"{requested}: from the tuned profile, proven by the probe.{note}",
                                requested)
        return WeightChoice(requested, f"{requested}: set explicitly and proven by the probe.{note}", requested,
                            automatic=False)
    if from_profile:
        fallback = auto_choice(report)
        what = (f"the probe refuted it ({refuted})" if refuted is not None
                else f"the probe got no answer about it ({unanswered})")
        return WeightChoice(fallback.value, f"the tuned profile asks for {requested}, but {what}; {fallback.reason}",
                            requested)
    if unanswered is not None:  # not refuted either: the operator's choice stands, unproven
        return WeightChoice(requested, f"{requested}: set explicitly; not proven: the probe got no answer about "
                                       f"this path ({unanswered}). Run `inhouse doctor --refresh` to probe again.",
                            requested, automatic=False)
    if force:
        return WeightChoice(requested, f"{requested}: FORCED although the probe refuted it ({refuted}); the engine "
                                       "may crash or compute wrong results.", requested, automatic=False)
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
    automatically (``auto``, or a tuned profile's value: ``WeightChoice.automatic``), that path (and the AMX
    path with the repack) counts as refuted for that model from then on: the restart and every later load of
    the model in this process resolve ``weight_buffers`` as if the probe had seen it crash, and the reason says
    so. Nothing is written to the probe's cache (``inhouse doctor --refresh`` still re-tests the build); a path
    the operator set is never demoted (they asked for it).
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
