"""The GGUF writer (production code since the e5 converter uses it): streamed data, typed arrays, atomic files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inhouse.models.gguf import read as g
from inhouse.models.gguf.read import parse_gguf_bytes, read_gguf_header
from inhouse.models.gguf.write import Typed, build_gguf, iter_gguf, write_gguf


def test_streamed_tensor_data_lands_at_the_offsets_the_header_names(tmp_path: Path) -> None:
    a = np.arange(10, dtype=np.float32)  # 40 bytes: padded to 64
    b = memoryview(bytes(range(18)) * 2)  # two Q4_0 blocks, from a view (as from a mapped file)
    path = write_gguf(tmp_path / "t.gguf", {"general.architecture": "bert"},
                      {"a": ((10,), "F32", a.tobytes()), "b": ((64,), "Q4_0", b), "z": ((8,), "F32")})
    info = read_gguf_header(path)
    raw = path.read_bytes()
    by_name = {t.name: t for t in info.tensors}
    assert [t.offset for t in info.tensors] == [0, 64, 128]  # each padded to the 32-byte alignment
    for name, expect in (("a", a.tobytes()), ("b", bytes(b)), ("z", bytes(32))):
        t = by_name[name]
        assert raw[info.data_offset + t.offset:info.data_offset + t.offset + t.n_bytes] == expect
    assert raw == build_gguf({"general.architecture": "bert"},
                             {"a": ((10,), "F32", a.tobytes()), "b": ((64,), "Q4_0", b), "z": ((8,), "F32")})
    assert not list(tmp_path.glob(".*tmp"))


def test_large_typed_arrays_round_trip() -> None:
    scores = [float(x) for x in np.linspace(-20, 0, 1000, dtype=np.float32)]
    kv = {"s": Typed(g.FLOAT32, scores), "i": Typed(g.INT32, list(range(-500, 500))),
          "t": Typed(g.STRING, [b"\xe2\x96\x81a", "b"] * 40), "u": Typed(g.UINT8, [1, 2, 255]),
          "bools": [True, False, True]}
    md = parse_gguf_bytes(build_gguf(kv)).metadata
    assert md["s"].length == 1000 and md["s"].head[:2] == pytest.approx(scores[:2])
    assert md["i"].length == 1000 and md["i"].head[:2] == (-500, -499)
    assert md["t"].length == 80 and md["t"].head[:2] == ("\u2581a", "b")
    assert md["u"] == [1, 2, 255] and md["bools"] == [True, False, True]


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_gguf(tmp_path / "x.gguf", {"bad": object()})
    assert not list(tmp_path.iterdir())
    assert b"".join(bytes(p) for p in iter_gguf({"k": 1})) == build_gguf({"k": 1})
