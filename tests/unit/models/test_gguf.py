"""The GGUF header reader: valid files read right, every malformed file refused with InvalidModelFile."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inhouse.errors import InvalidModelFile
from inhouse.models.gguf import read as g
from inhouse.models.gguf.read import GgufArray, parse_gguf_bytes, read_gguf_header
from inhouse.testing.gguf_writer import (
    Typed,
    build_gguf,
    tiny_model_kv,
    tiny_model_tensors,
    write_gguf,
    write_tiny_model,
)

TEMPLATE = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"


def tiny_bytes(**kw: object) -> bytes:
    return build_gguf(tiny_model_kv(chat_template=TEMPLATE, **kw), tiny_model_tensors())  # type: ignore[arg-type]


VALID = tiny_bytes()


def refused(data: bytes, match: str | None = None) -> InvalidModelFile:
    with pytest.raises(InvalidModelFile, match=match) as info:
        parse_gguf_bytes(data)
    return info.value


def header(version: int = 3, tensors: int = 0, kvs: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, kvs)


def kv_string(key: str) -> bytes:
    raw = key.encode()
    return struct.pack("<Q", len(raw)) + raw


# -- valid files ---------------------------------------------------------------------------------------


def test_reads_tiny_model(tmp_path: Path) -> None:
    path = write_tiny_model(tmp_path / "tiny.gguf", chat_template=TEMPLATE, context_length=4096)
    info = read_gguf_header(path)
    assert info.version == 3 and info.tensor_count == 3
    assert info.architecture == "llama" and info.name == "tiny-llama"
    assert info.context_length == 4096
    assert info.file_type == 7 and info.quantization == "Q8_0"
    assert info.chat_template == TEMPLATE
    assert (info.bos_token, info.eos_token) == ("<s>", "</s>")
    assert info.alignment == 32 and info.data_offset % 32 == 0
    assert info.n_parameters == 64 * 4 + 64 + 256 * 2
    assert info.file_size == path.stat().st_size
    assert {t.ggml_type for t in info.tensors} == {"Q8_0", "F32", "Q4_K"}
    tokens = info.metadata["tokenizer.ggml.tokens"]
    assert isinstance(tokens, GgufArray) and tokens.length == 100
    assert tokens.head[:3] == ("<unk>", "<s>", "</s>")


def test_scalar_types_and_small_arrays() -> None:
    kv = {
        "a.u8": Typed(g.UINT8, 255), "a.i8": Typed(g.INT8, -5), "a.u16": Typed(g.UINT16, 65535),
        "a.i16": Typed(g.INT16, -300), "a.u32": Typed(g.UINT32, 2**32 - 1), "a.i32": -7,
        "a.f32": 1.5, "a.bool": True, "a.str": "héllo 你好", "a.u64": Typed(g.UINT64, 2**64 - 1),
        "a.i64": 2**40, "a.f64": Typed(g.FLOAT64, 0.1), "a.arr": [1, 2, 3], "a.strs": ["x", "y"],
        "a.bools": [True, False], "a.empty": Typed(g.STRING, []),
    }
    md = parse_gguf_bytes(build_gguf(kv)).metadata
    assert md["a.u8"] == 255 and md["a.i8"] == -5 and md["a.u16"] == 65535 and md["a.i16"] == -300
    assert md["a.u32"] == 2**32 - 1 and md["a.i32"] == -7 and md["a.f32"] == 1.5 and md["a.bool"] is True
    assert md["a.str"] == "héllo 你好" and md["a.u64"] == 2**64 - 1 and md["a.i64"] == 2**40
    assert md["a.f64"] == 0.1 and md["a.arr"] == [1, 2, 3] and md["a.strs"] == ["x", "y"]
    assert md["a.bools"] == [True, False] and md["a.empty"] == []


def test_long_int_array_is_summarized() -> None:
    md = parse_gguf_bytes(build_gguf({"big": list(range(1000))})).metadata
    assert md["big"] == GgufArray("int32", 1000, tuple(range(g.ARRAY_HEAD)))


def test_bos_eos_resolved_from_a_large_vocabulary() -> None:
    vocab = [f"t{i}" for i in range(20_000)]
    kv = tiny_model_kv(tokens=vocab)
    kv["tokenizer.ggml.bos_token_id"] = Typed(g.UINT32, 19_999)
    kv["tokenizer.ggml.eos_token_id"] = Typed(g.UINT32, 12_345)
    info = parse_gguf_bytes(build_gguf(kv))
    assert (info.bos_token, info.eos_token) == ("t19999", "t12345")


def test_out_of_range_token_ids_give_none() -> None:
    kv = tiny_model_kv()
    kv["tokenizer.ggml.bos_token_id"] = Typed(g.UINT32, 10_000)
    kv["tokenizer.ggml.eos_token_id"] = "not an id"
    info = parse_gguf_bytes(build_gguf(kv))
    assert info.bos_token is None and info.eos_token is None


def test_quantization_names_and_guess() -> None:
    assert parse_gguf_bytes(tiny_bytes(file_type=15)).quantization == "Q4_K_M"
    assert parse_gguf_bytes(tiny_bytes(file_type=3)).quantization == "Q4_1"
    assert parse_gguf_bytes(tiny_bytes(file_type=999)).quantization is None
    kv = tiny_model_kv()
    del kv["general.file_type"]
    # Without general.file_type: the type of most weight bytes among 2-D tensors.
    assert parse_gguf_bytes(build_gguf(kv, tiny_model_tensors())).quantization == "Q4_K"


def test_version_2_and_custom_alignment() -> None:
    kv = {**tiny_model_kv(), "general.alignment": Typed(g.UINT32, 64)}
    info = parse_gguf_bytes(build_gguf(kv, tiny_model_tensors(), version=2, alignment=64))
    assert info.version == 2 and info.alignment == 64 and info.data_offset % 64 == 0


def test_every_known_ggml_type_sizes_a_tensor() -> None:
    tensors = {f"t{tid}": ((256 * 2, 3), tid) for tid in g.GGML_TYPES}
    info = parse_gguf_bytes(build_gguf({"general.architecture": "x"}, tensors))  # type: ignore[arg-type]
    for t in info.tensors:
        _, block, size = g.GGML_TYPES[int(t.name[1:])]
        assert t.n_bytes == 512 * 3 // block * size


# -- malformed files -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "too short"),
        (b"GGUF", "too short"),
        (b"GGML" + bytes(20), "not a GGUF file"),
        (b"\x00" * 24, "not a GGUF file"),
        (header(version=1), "version 1"),
        (header(version=4), "version 4"),
        (header(tensors=1_000_001), "tensors"),
        (header(kvs=100_001), "metadata entries"),
        (header(kvs=50_000), "truncated"),
        (header(tensors=2) + bytes(10), "truncated"),
    ],
)
def test_refuses_bad_headers(data: bytes, match: str) -> None:
    refused(data, match)


def test_refuses_string_longer_than_file() -> None:
    data = header(kvs=1) + struct.pack("<Q", 2**62) + b"key"
    refused(data, "truncated")


def test_refuses_value_string_longer_than_file() -> None:
    data = header(kvs=1) + kv_string("k") + struct.pack("<IQ", g.STRING, 10**12) + b"x" * 20
    refused(data, "truncated")


def test_refuses_huge_arrays() -> None:
    for itype in (g.UINT8, g.UINT64, g.STRING):
        data = header(kvs=1) + kv_string("k") + struct.pack("<IIQ", g.ARRAY, itype, 2**61) + bytes(32)
        refused(data, "truncated")


def test_refuses_unknown_value_type_and_nested_arrays() -> None:
    refused(header(kvs=1) + kv_string("k") + struct.pack("<I", 13) + bytes(16), "unknown value type 13")
    bad_item = header(kvs=1) + kv_string("k") + struct.pack("<II", g.ARRAY, 77) + bytes(16)
    refused(bad_item, "unknown value type")
    nested = header(kvs=1) + kv_string("k") + struct.pack("<IIQ", g.ARRAY, g.ARRAY, 1) + bytes(16)
    refused(nested, "nested array")


def test_refuses_duplicate_keys_and_tensors() -> None:
    one = kv_string("k") + struct.pack("<IB", g.UINT8, 1)
    refused(header(kvs=2) + one + one + bytes(16), "appears twice")
    data = build_gguf({"a": 1}, {"x": ((32,), "F32"), "y": ((32,), "F32")})
    refused(data.replace(b"\x01\x00\x00\x00\x00\x00\x00\x00y", b"\x01\x00\x00\x00\x00\x00\x00\x00x"),
            "appears twice")


def test_refuses_bad_tensors() -> None:
    refused(build_gguf({"a": 1}, {"w": ((32,), 4)}), "unknown or removed ggml type 4")
    refused(build_gguf({"a": 1}, {"w": ((32,), 31)}), "unknown or removed")
    refused(build_gguf({"a": 1}, {"w": ((33, 2), "Q8_0")}), "multiple of the Q8_0 block size")
    five = build_gguf({"a": 1}, {"w": ((1, 1, 1, 1), "F32")})
    refused(five.replace(struct.pack("<Q", 1) + b"w" + struct.pack("<I", 4),
                         struct.pack("<Q", 1) + b"w" + struct.pack("<I", 5)), "5 dimensions")


def test_refuses_misaligned_offset_and_data_past_eof() -> None:
    data = bytearray(build_gguf({"a": 1}, {"x": ((32,), "F32"), "y": ((32,), "F32")}))
    off = data.index(b"y") + 1 + 4 + 8 + 4  # name, n_dims, dim, type → offset field of "y"
    assert struct.unpack_from("<Q", data, off)[0] == 128
    struct.pack_into("<Q", data, off, 130)
    refused(bytes(data), "not aligned")
    struct.pack_into("<Q", data, off, 128 * 1000)
    refused(bytes(data), "truncated: tensor 'y'")


def test_refuses_bad_alignment() -> None:
    for value in (0, 3, 48):
        refused(build_gguf({"general.alignment": Typed(g.UINT32, value)}), "power of two")
    refused(build_gguf({"general.alignment": 32}), "must be a uint32")  # int32, not uint32


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFile, match="No such model file"):
        read_gguf_header(tmp_path / "missing.gguf")
    with pytest.raises(InvalidModelFile, match="directory"):
        read_gguf_header(tmp_path)
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(InvalidModelFile, match="too short"):
        read_gguf_header(tmp_path / "empty.gguf")


# -- fuzzing ---------------------------------------------------------------------------------------------


def _end_of_data(data: bytes) -> int:
    info = parse_gguf_bytes(data)
    return max(info.data_offset + t.offset + t.n_bytes for t in info.tensors)


def test_every_truncation_is_refused() -> None:
    end = _end_of_data(VALID)
    for cut in range(len(VALID)):
        if cut < end:
            refused(VALID[:cut])
        else:  # only padding after the last tensor was cut: still a valid file
            parse_gguf_bytes(VALID[:cut])


def test_every_truncation_of_a_file_is_refused(tmp_path: Path) -> None:
    end = _end_of_data(VALID)
    path = tmp_path / "cut.gguf"
    for cut in range(0, end, 7):
        path.write_bytes(VALID[:cut])
        with pytest.raises(InvalidModelFile):
            read_gguf_header(path)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_flipped_bytes_never_crash(flips: list[tuple[int, int]]) -> None:
    data = bytearray(VALID)
    for pos, value in flips:
        data[pos] = value
    with contextlib.suppress(InvalidModelFile):
        parse_gguf_bytes(bytes(data))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512), st.sampled_from([b"", b"GGUF\x03\x00\x00\x00", b"GGUF\x02\x00\x00\x00"]))
def test_garbage_never_crashes(tail: bytes, prefix: bytes) -> None:
    with contextlib.suppress(InvalidModelFile):
        parse_gguf_bytes(prefix + tail)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(VALID) - 8), st.integers(0, 2**64 - 1))
def test_overwritten_u64_never_crashes(pos: int, value: int) -> None:
    data = bytearray(VALID)
    struct.pack_into("<Q", data, pos, value)
    with contextlib.suppress(InvalidModelFile):
        parse_gguf_bytes(bytes(data))


def test_writer_round_trip(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "x.gguf", {"general.architecture": "qwen2", "qwen2.context_length": 32768},
                      {"w": ((256,), "Q6_K", bytes(210))})
    info = read_gguf_header(path)
    assert info.architecture == "qwen2" and info.context_length == 32768 and info.tensors[0].n_bytes == 210
