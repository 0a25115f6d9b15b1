"""The production wiring with fakes: ``bootstrap.build_services`` over FakeBackend engines, the FakeEmbedder, no
packaged catalog and tiny GGUF files registered as the models, in a data directory of the caller's (a temporary
one in tests). What the HTTP and web tests run against; only the model and the embedder are fake.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inhouse.bootstrap import EngineFactory, build_services
from inhouse.config import Settings
from inhouse.testing.fakes import build_fake_engine
from inhouse.testing.gguf_writer import tiny_model_kv, tiny_model_tensors, write_gguf

if TYPE_CHECKING:
    from inhouse.services import Services

FAKE_MODEL = "fake-model"


def fake_settings(data_dir: Path, overrides: Mapping[str, Any] | None = None) -> Settings:
    """``Settings`` with ``models.default`` = the fake model and the fake embedder; ``overrides`` are merged per
    section (``{"kb": {"min_similarity": 0.3}}`` keeps the fake embedder)."""
    sections: dict[str, Any] = {"models": {"default": FAKE_MODEL}, "kb": {"embedder": "fake"}}
    for name, value in (overrides or {}).items():
        sections[name] = {**sections.get(name, {}), **value} if isinstance(value, Mapping) else value
    return Settings(data_dir=data_dir, **sections)


def build_fake_services(data_dir: Path, *, settings: Mapping[str, Any] | None = None,
                        load_engine: EngineFactory | None = None,
                        models: Mapping[str, str | None] | None = None, parser: Any = None) -> Services:
    """``build_services`` with fakes. ``models`` maps each model name to its chat template (None: the default
    ChatML); each becomes a tiny GGUF file in ``data_dir`` whose engine ``load_engine`` builds (default: the plain
    FakeBackend engine)."""
    services = build_services(fake_settings(data_dir, settings),
                              load_engine=load_engine or (lambda spec: build_fake_engine(spec.name)), catalog=(),
                              parser=parser)
    try:
        for name, template in (models if models is not None else {FAKE_MODEL: None}).items():
            path = write_gguf(data_dir / f"{name}.gguf", tiny_model_kv(chat_template=template), tiny_model_tensors())
            services.registry.add(path, name)
    except BaseException:
        services.close()
        raise
    return services
