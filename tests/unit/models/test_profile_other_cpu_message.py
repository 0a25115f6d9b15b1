"""The warning for a tuned profile measured on another CPU names both CPUs, each with its signature (bug: it called
the profile's CPU "this one", so an operator could not see what differed)."""

from __future__ import annotations

from pathlib import Path

from inhouse.models.tuning.profile import ProfileStore, TunedProfile

SHA = "a" * 64


def test_the_other_cpu_warning_describes_the_profile_s_cpu_and_this_one(tmp_path: Path) -> None:
    ProfileStore(tmp_path / "profiles", lambda: "sig2core").save(TunedProfile(
        model="m", model_sha256=SHA, cpu_signature="sig2core", created_at="t", engine={"n_threads": 2},
        cpu="AMD EPYC: 2 cores / 2 CPUs"))
    here = ProfileStore(tmp_path / "profiles", lambda: "sig1core", lambda: "AMD EPYC: 1 cores / 1 CPUs")
    message = here.match(SHA).message
    assert "measured on another CPU: AMD EPYC: 2 cores / 2 CPUs (signature sig2core)" in message
    assert "this machine: AMD EPYC: 1 cores / 1 CPUs (signature sig1core)" in message
    assert "this one is" not in message
    bare = ProfileStore(tmp_path / "profiles", lambda: "sig1core").match(SHA).message  # no description given
    assert "this machine: signature sig1core" in bare and "(signature sig2core)" in bare
