"""Re-quantize a GGUF with llama.cpp's own ``llama_model_quantize`` (used by ``inhouse tune``)."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from inhouse.engine.backends.llama_cpp._library import init_process, load_library
from inhouse.errors import EngineFailure, InvalidModelFile, InvalidRequest
from inhouse.hardware.cpu import physical_cores

# Weight formats `quantize_model` writes (llama_ftype names without the LLAMA_FTYPE_MOSTLY_ prefix).
QUANT_FTYPES = ("q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "f16")


def quantize_model(src: str | Path, dst: str | Path, ftype: str, *, n_threads: int = 0) -> None:
    """Write ``src`` (a GGUF) re-quantized to ``ftype`` at ``dst`` with llama.cpp's ``llama_model_quantize``.

    Requantizing an already quantized file is allowed (it goes through f32): the result can be faster on
    this CPU, never more accurate than the source. ``dst`` is written to a temporary name first so a failed
    or interrupted run never leaves a half-written model behind.
    """
    if ftype not in QUANT_FTYPES:
        raise InvalidRequest(f"Unknown weight format {ftype!r}; use one of {', '.join(QUANT_FTYPES)}.")
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise InvalidModelFile(f"The model file {src} does not exist.", param="model")
    L = load_library()
    router = init_process(L)
    params = L.llama_model_quantize_default_params()
    params.nthread = n_threads or physical_cores()
    params.ftype = getattr(L, f"LLAMA_FTYPE_MOSTLY_{ftype.upper()}")
    params.allow_requantize = True
    tmp = dst.with_name(dst.name + ".tmp")
    mark = router.n_errors
    rc = L.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        errors = " ".join(router.errors_since(mark)) or "no details from llama.cpp"
        raise EngineFailure(f"llama.cpp could not quantize {src.name} to {ftype} (code {rc}): {errors}")
    os.replace(tmp, dst)

