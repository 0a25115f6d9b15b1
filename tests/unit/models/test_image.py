"""Bundles: build (with a stand-in for pip), verify every hash, refuse altered bundles, install."""

from __future__ import annotations

import errno
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from inhouse.errors import Conflict, InvalidRequest, StorageFull
from inhouse.models.image import build_image, install_image, verify_image, write_manifest
from inhouse.models.registry import ModelRegistry
from inhouse.models.tuning.profile import ProfileStore, TunedProfile
from inhouse.testing.gguf_writer import write_tiny_model


def fake_wheels(dest: Path, progress: object, extra: tuple[str, ...]) -> list[str]:
    dest.mkdir(parents=True)
    (dest / "inhouse-0.1.0-py3-none-any.whl").write_bytes(b"PK fake wheel")
    (dest.parent / "requirements.txt").write_text("inhouse\n")
    return ["dep==1.0"]


def make_registry(root: Path) -> ModelRegistry:
    return ModelRegistry(root / "cache", lambda spec: None, 1000, catalog=())  # type: ignore[arg-type, return-value]


def cpu1(directory: Path) -> ProfileStore:
    """The profiles of a machine whose CPU signature is "cpu1"."""
    return ProfileStore(directory, lambda: "cpu1")


@pytest.fixture
def source(tmp_path: Path) -> tuple[ModelRegistry, ProfileStore]:
    reg = make_registry(tmp_path / "src")
    spec = reg.add(write_tiny_model(tmp_path / "tiny.gguf"), "tiny")
    profiles = ProfileStore(tmp_path / "src" / "profiles", lambda: "cpu1")
    assert spec.sha256 is not None
    profiles.save(TunedProfile(model="tiny", model_sha256=spec.sha256, cpu_signature="cpu1", created_at="t",
                               engine={"n_threads": 1}))
    return reg, profiles


def test_build_verify_install(source: tuple[ModelRegistry, ProfileStore], tmp_path: Path) -> None:
    reg, profiles = source
    out = tmp_path / "bundle"
    info = build_image(reg, profiles, "tiny", out, wheels=fake_wheels)
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"install.sh", "config.toml", "bundle.json", "MANIFEST.sha256", "model/tiny.gguf",
            "wheels/inhouse-0.1.0-py3-none-any.whl", "requirements.txt"} <= names
    assert any(n.startswith("profiles/") for n in names)
    assert verify_image(out) == info.files == len(names) - 1
    meta = json.loads((out / "bundle.json").read_text())
    assert meta["model"] == "tiny" and meta["models"][0]["sha256"] == reg.resolve("tiny").sha256

    target = make_registry(tmp_path / "dst")
    installed = install_image(out, target, cpu1(tmp_path / "dst" / "profiles"), tmp_path / "dst" / "config.toml")
    assert installed.names == ["tiny"] and installed.notes == []
    assert target.resolve("tiny").present and target.resolve("tiny").sha256 == reg.resolve("tiny").sha256
    assert ProfileStore(tmp_path / "dst" / "profiles", lambda: "cpu1").match(reg.resolve("tiny").sha256).applies
    assert "default = \"tiny\"" in (tmp_path / "dst" / "config.toml").read_text()


def test_one_altered_byte_is_named(source: tuple[ModelRegistry, ProfileStore], tmp_path: Path) -> None:
    reg, profiles = source
    out = tmp_path / "bundle"
    build_image(reg, profiles, "tiny", out, wheels=fake_wheels)
    model = out / "model" / "tiny.gguf"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(InvalidRequest, match=r"model/tiny\.gguf does not match MANIFEST") as err:
        verify_image(out)
    assert err.value.code == "image_corrupt"
    with pytest.raises(InvalidRequest, match=r"model/tiny\.gguf"):
        install_image(out, make_registry(tmp_path / "dst"), cpu1(tmp_path / "p"), tmp_path / "c.toml")


def test_extra_and_missing_files_are_refused(source: tuple[ModelRegistry, ProfileStore], tmp_path: Path) -> None:
    reg, profiles = source
    out = tmp_path / "bundle"
    build_image(reg, profiles, "tiny", out, wheels=fake_wheels)
    (out / "wheels" / "evil-1.0-py3-none-any.whl").write_bytes(b"x")
    with pytest.raises(InvalidRequest, match=r"evil-1\.0-py3-none-any\.whl is not listed"):
        verify_image(out)
    (out / "wheels" / "evil-1.0-py3-none-any.whl").unlink()
    (out / "config.toml").unlink()
    with pytest.raises(InvalidRequest, match=r"config\.toml is listed in MANIFEST\.sha256 but missing"):
        verify_image(out)
    with pytest.raises(InvalidRequest, match="not an inhouse bundle"):
        verify_image(tmp_path)  # a directory without a manifest
    with pytest.raises(Conflict):
        build_image(reg, profiles, "tiny", out, wheels=fake_wheels)


@pytest.mark.parametrize("name", ["bundle", "bundle.tar.gz"])
def test_a_failed_build_leaves_nothing_behind(source: tuple[ModelRegistry, ProfileStore], tmp_path: Path,
                                              name: str) -> None:
    reg, profiles = source
    out = tmp_path / "images" / name

    def pip_fails(dest: Path, progress: object, extra: tuple[str, ...]) -> list[str]:
        fake_wheels(dest, progress, extra)
        raise StorageFull("No space left on device.")

    out.parent.mkdir()
    with pytest.raises(StorageFull):
        build_image(reg, profiles, "tiny", out, wheels=pip_fails)
    assert list((tmp_path / "images").iterdir()) == []  # no half-built bundle to copy to a server
    out.parent.joinpath("empty").mkdir()  # an empty directory named as the output is filled
    info = build_image(reg, profiles, "tiny", out.parent / "empty", wheels=fake_wheels)
    assert verify_image(info.path) == info.files


def test_tar_bundle(source: tuple[ModelRegistry, ProfileStore], tmp_path: Path) -> None:
    reg, profiles = source
    out = tmp_path / "bundle.tar"
    info = build_image(reg, profiles, "tiny", out, wheels=fake_wheels)
    assert out.is_file() and verify_image(out) == info.files
    # one byte altered inside the tar
    unpacked = tmp_path / "x"
    with tarfile.open(out) as tar:
        tar.extractall(unpacked, filter="data")
    cfg = unpacked / "config.toml"
    cfg.write_text(cfg.read_text().replace("8000", "8001"))
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        tar.add(unpacked, arcname=".")
    with pytest.raises(InvalidRequest, match=r"config\.toml does not match"):
        verify_image(bad)
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all")
    with pytest.raises(InvalidRequest, match="not a bundle directory or a readable tar"):
        verify_image(tmp_path / "junk.tar")


def test_a_stale_file_in_the_cache_is_replaced(source: tuple[ModelRegistry, ProfileStore], tmp_path: Path) -> None:
    reg, profiles = source
    out = tmp_path / "bundle"
    build_image(reg, profiles, "tiny", out, wheels=fake_wheels)
    target = make_registry(tmp_path / "dst")
    target.cache_dir.mkdir(parents=True)
    # another build of the model under the bundle's file name, left from earlier
    write_tiny_model(target.cache_dir / "tiny.gguf", context_length=4096)
    for _ in range(2):
        assert install_image(out, target, cpu1(tmp_path / "p"), tmp_path / "c.toml").names == ["tiny"]
        assert target.resolve("tiny").sha256 == reg.resolve("tiny").sha256
        assert (target.cache_dir / "tiny.gguf").read_bytes() == (out / "model" / "tiny.gguf").read_bytes()


def test_a_name_registered_with_other_weights_is_refused(source: tuple[ModelRegistry, ProfileStore],
                                                         tmp_path: Path) -> None:
    reg, profiles = source
    out = tmp_path / "bundle"
    build_image(reg, profiles, "tiny", out, wheels=fake_wheels)
    target = make_registry(tmp_path / "dst")
    target.cache_dir.mkdir(parents=True)
    other = target.add(write_tiny_model(target.cache_dir / "tiny.gguf", context_length=4096), "tiny")
    before = (target.cache_dir / "tiny.gguf").read_bytes()
    with pytest.raises(Conflict, match="already registered with other weights"):
        install_image(out, target, cpu1(tmp_path / "p"), tmp_path / "c.toml")
    assert target.resolve("tiny").sha256 == other.sha256
    assert (target.cache_dir / "tiny.gguf").read_bytes() == before
    # the file of another registered model is not overwritten either
    target.remove("tiny")
    target.add(target.cache_dir / "tiny.gguf", "mine")
    with pytest.raises(Conflict, match="holds the weights of model 'mine'"):
        install_image(out, target, cpu1(tmp_path / "p"), tmp_path / "c.toml")
    assert (target.cache_dir / "tiny.gguf").read_bytes() == before


def test_a_full_disk_leaves_nothing_behind(source: tuple[ModelRegistry, ProfileStore], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    reg, profiles = source
    out = tmp_path / "bundle"
    build_image(reg, profiles, "tiny", out, wheels=fake_wheels)
    target = make_registry(tmp_path / "dst")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", full)
        with pytest.raises(StorageFull, match="disk is full"):
            install_image(out, target, cpu1(tmp_path / "p"), tmp_path / "c.toml")
    assert list(target.cache_dir.iterdir()) == []  # no cut-off model for the next install to trust
    assert install_image(out, target, cpu1(tmp_path / "p"), tmp_path / "c.toml").names == ["tiny"]
    assert target.resolve("tiny").sha256 == reg.resolve("tiny").sha256


@pytest.mark.parametrize(("change", "message"), [
    (lambda info: None, "bundle.json is missing"),
    (lambda info: "{not json", "bundle.json is not valid JSON"),
    (lambda info: {"format": 1}, "bundle.json lists no models"),
    (lambda info: {**info, "models": [{"name": "tiny"}]}, "needs a name, file, sha256 and catalog"),
    (lambda info: {**info, "models": [{**info["models"][0], "file": "../tiny.gguf"}]},
     r"names '\.\./tiny\.gguf', which MANIFEST\.sha256 does not list"),
    (lambda info: {**info, "models": [{**info["models"][0], "sha256": "0" * 64}]}, "but MANIFEST.sha256 has"),
], ids=["missing", "not-json", "no-models", "no-keys", "outside", "other-sha"])
def test_bundle_json_is_checked_against_the_manifest(source: tuple[ModelRegistry, ProfileStore], tmp_path: Path,
                                                     change: Any, message: str) -> None:
    reg, profiles = source
    out = tmp_path / "bundle"
    build_image(reg, profiles, "tiny", out, wheels=fake_wheels)
    new = change(json.loads((out / "bundle.json").read_text()))
    if new is None:
        (out / "bundle.json").unlink()
    else:
        (out / "bundle.json").write_text(new if isinstance(new, str) else json.dumps(new))
    write_manifest(out)  # consistent, so only bundle.json itself is wrong
    target = make_registry(tmp_path / "dst")
    with pytest.raises(InvalidRequest, match=message) as err:
        install_image(out, target, cpu1(tmp_path / "p"), tmp_path / "c.toml")
    assert err.value.code == "image_corrupt"
    assert not target.cache_dir.exists() and target.names() == []


def test_install_refuses_a_tar_with_a_hint(source: tuple[ModelRegistry, ProfileStore], tmp_path: Path) -> None:
    reg, profiles = source
    build_image(reg, profiles, "tiny", tmp_path / "bundle.tar", wheels=fake_wheels)
    with pytest.raises(InvalidRequest, match=r"not a directory.*Unpack it"):
        install_image(tmp_path / "bundle.tar", make_registry(tmp_path / "dst"), cpu1(tmp_path / "p"),
                      tmp_path / "c.toml")


def test_the_patched_llama_wheel_is_found_by_its_build_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inhouse.models.image import local_wheel_dirs

    cache = tmp_path / "wheels"
    (cache / "llama-cpp-python-0.3.36-abc123").mkdir(parents=True)
    (cache / "llama-cpp-python-0.3.36-other").mkdir()
    monkeypatch.setenv("INHOUSE_WHEEL_CACHE", str(cache))
    assert local_wheel_dirs(tmp_path) == []  # no marker: a venv without the patched build
    (tmp_path / ".inhouse-llama-build").write_text("abc123\n")
    assert local_wheel_dirs(tmp_path) == [str(cache / "llama-cpp-python-0.3.36-abc123")]


def big_wheels(dest: Path, progress: object, extra: tuple[str, ...]) -> list[str]:
    """A wheel of incompressible bytes, so that cutting a bundle short lands inside a file, gzipped or not."""
    fake_wheels(dest, progress, extra)
    (dest / "dep-1.0-py3-none-any.whl").write_bytes(os.urandom(300_000))
    return ["dep==1.0"]


@pytest.mark.parametrize("name", ["bundle.tar", "bundle.tar.gz"])
def test_a_truncated_tar_is_one_error_not_a_traceback(source: tuple[ModelRegistry, ProfileStore], tmp_path: Path,
                                                     name: str) -> None:
    # An interrupted copy: tarfile raises ReadError (.tar) or gzip EOFError (.tar.gz) only while reading.
    reg, profiles = source
    out = tmp_path / name
    build_image(reg, profiles, "tiny", out, wheels=big_wheels)
    cut = tmp_path / f"cut-{name}"
    cut.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    with pytest.raises(InvalidRequest, match="truncated or damaged") as err:
        verify_image(cut)
    assert err.value.code == "image_corrupt"


def test_a_truncated_tar_fails_verify_in_one_line(source: tuple[ModelRegistry, ProfileStore], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from inhouse.cli.main import app

    reg, profiles = source
    out = tmp_path / "bundle.tar.gz"
    build_image(reg, profiles, "tiny", out, wheels=big_wheels)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    result = CliRunner().invoke(app, ["image", "verify", str(cut)], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "truncated or damaged" in result.output and "Aborted" not in result.output


def test_this_cpu_s_profile_is_kept_over_another_cpu_s(source: tuple[ModelRegistry, ProfileStore],
                                                       tmp_path: Path) -> None:
    reg, profiles = source
    sha = reg.resolve("tiny").sha256
    assert sha is not None
    here = build_image(reg, profiles, "tiny", tmp_path / "here", wheels=fake_wheels).path
    # the same weights tuned on another machine of the fleet
    profiles.save(TunedProfile(model="tiny", model_sha256=sha, cpu_signature="xeon", cpu="Intel Xeon",
                               created_at="t2", engine={"n_threads": 8}))
    xeon = build_image(reg, profiles, "tiny", tmp_path / "xeon", wheels=fake_wheels).path
    target, store = make_registry(tmp_path / "dst"), cpu1(tmp_path / "dst" / "profiles")
    assert install_image(here, target, store, tmp_path / "c.toml").notes == []
    local = store.path_for(sha).read_text()

    done = install_image(xeon, target, store, tmp_path / "c.toml")
    assert store.path_for(sha).read_text() == local and store.match(sha).applies  # still tuned here
    assert len(done.notes) == 1 and "Kept this machine's tuned profile of tiny" in done.notes[0]
    assert "another CPU (Intel Xeon, signature xeon; this machine's is cpu1)" in done.notes[0]

    # no profile of this machine: the foreign one is installed, and said to be ignored here
    fresh = cpu1(tmp_path / "fresh" / "profiles")
    done = install_image(xeon, make_registry(tmp_path / "fresh"), fresh, tmp_path / "c2.toml")
    assert fresh.match(sha).status == "other_cpu"
    assert len(done.notes) == 1 and "measured on another CPU" in done.notes[0] and "serve ignores it" in done.notes[0]


def test_a_profile_of_this_cpu_in_the_bundle_replaces_the_local_one(source: tuple[ModelRegistry, ProfileStore],
                                                                    tmp_path: Path) -> None:
    reg, profiles = source
    sha = reg.resolve("tiny").sha256
    assert sha is not None
    store = cpu1(tmp_path / "dst" / "profiles")
    store.save(TunedProfile(model="tiny", model_sha256=sha, cpu_signature="cpu1", created_at="old",
                            engine={"n_threads": 2}))
    out = build_image(reg, profiles, "tiny", tmp_path / "b", wheels=fake_wheels).path
    assert install_image(out, make_registry(tmp_path / "dst"), store, tmp_path / "c.toml").notes == []
    assert store.read(store.path_for(sha)).created_at == "t"


@pytest.mark.parametrize("tamper", ["directory", "invalid"])
def test_a_bad_profile_is_refused_before_anything_is_registered(source: tuple[ModelRegistry, ProfileStore],
                                                                tmp_path: Path, tamper: str) -> None:
    reg, profiles = source
    out = build_image(reg, profiles, "tiny", tmp_path / "b", wheels=fake_wheels).path
    target, store = make_registry(tmp_path / "dst"), cpu1(tmp_path / "dst" / "profiles")
    if tamper == "directory":
        # a directory named like a profile: not a file, so the manifest cannot list it; it is left alone
        (out / "profiles" / ("c" * 64 + ".toml")).mkdir()
        assert install_image(out, target, store, tmp_path / "c.toml").names == ["tiny"]
        assert not store.path_for("c" * 64).exists()
        return
    (out / "profiles" / ("c" * 64 + ".toml")).write_text("format = 1\n[engine\n")
    write_manifest(out)  # listed, so only the profile itself is wrong
    with pytest.raises(InvalidRequest, match=r"not a valid tuned profile.*not TOML") as err:
        install_image(out, target, store, tmp_path / "c.toml")
    assert err.value.code == "image_corrupt"
    assert target.names() == [] and not store.directory.exists() and not (tmp_path / "c.toml").exists()
