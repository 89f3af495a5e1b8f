"""The fast GGUF header reader agrees with gguf.GGUFReader on every value type."""

from __future__ import annotations

import gguf
import pytest

from slipstream.engine.loader import UnsupportedModelError
from slipstream.engine.loader.gguf_metadata import read_gguf_metadata


def test_every_value_type_matches_gguf_reader(tmp_path):
    path = tmp_path / "kv.gguf"
    writer = gguf.GGUFWriter(str(path), "qwen3")
    writer.add_uint8("t.u8", 200)
    writer.add_int8("t.i8", -5)
    writer.add_uint16("t.u16", 60000)
    writer.add_int16("t.i16", -30000)
    writer.add_uint32("t.u32", 4_000_000_000)
    writer.add_int32("t.i32", -2_000_000_000)
    writer.add_float32("t.f32", 0.1)
    writer.add_bool("t.bool", True)
    writer.add_string("t.str", "naïve ✓ <|im_end|>")
    writer.add_uint64("t.u64", 2**63 + 1)
    writer.add_int64("t.i64", -(2**40))
    writer.add_float64("t.f64", 1e-300)
    writer.add_array("t.strs", ["a", "", "Ġb", "日本"])
    writer.add_array("t.ints", [1, -2, 3])
    writer.add_array("t.floats", [0.5, -1.25])
    writer.add_array("t.empty", [])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    ours = read_gguf_metadata(path)
    reader = gguf.GGUFReader(path)
    expected = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert ours == expected
    assert ours["general.architecture"] == "qwen3"
    assert ours["t.str"] == "naïve ✓ <|im_end|>"
    assert ours["t.u64"] == 2**63 + 1


def test_bad_magic(tmp_path):
    path = tmp_path / "x.gguf"
    path.write_bytes(b"GGML" + b"\0" * 40)
    with pytest.raises(UnsupportedModelError, match="not a GGUF file"):
        read_gguf_metadata(path)


def test_truncated_header(tmp_path):
    path = tmp_path / "x.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\0" * 8 + b"\x05" + b"\0" * 7)
    with pytest.raises(UnsupportedModelError, match="truncated"):
        read_gguf_metadata(path)
