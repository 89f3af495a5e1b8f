"""Dequantization of every supported GGUF type, checked against independent references.

Blocks are written by hand following ggml's C layouts (ggml-quants.c), with power-of-two scales
so every expected value is exact, then read back through a real GGUF file and `GGUFFile`.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from slipstream.engine.loader.gguf_file import GGUFFile

QT = gguf.GGMLQuantizationType
ROWS = 3


def _f16_bytes(value: float, n: int) -> np.ndarray:
    return np.full((n, 1), value, dtype=np.float16).view(np.uint8)


def _read_back(tmp_path: Path, raw: np.ndarray, qtype: QT) -> torch.Tensor:
    """Write `raw` (rows of block bytes, or a float array) as one tensor and read it back."""
    path = tmp_path / "t.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("t", raw, raw_dtype=qtype if raw.dtype == np.uint8 else None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return GGUFFile(path).read_tensor("t")


def _q8_0(rng: np.random.Generator, nblocks: int) -> tuple[np.ndarray, np.ndarray]:
    d = 2.0 ** rng.integers(-6, 2, size=nblocks)
    q = rng.integers(-128, 128, size=(nblocks, 32), dtype=np.int8)
    raw = np.concatenate([_f16_bytes_vec(d), q.view(np.uint8)], axis=1)
    return raw, (d[:, None] * q).reshape(-1)


def _f16_bytes_vec(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float16).reshape(-1, 1).view(np.uint8)


def _q4_0(rng: np.random.Generator, nblocks: int) -> tuple[np.ndarray, np.ndarray]:
    d = 2.0 ** rng.integers(-6, 2, size=nblocks)
    q = rng.integers(0, 16, size=(nblocks, 32), dtype=np.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)  # element j in the low nibble, j+16 in the high one
    raw = np.concatenate([_f16_bytes_vec(d), packed], axis=1)
    return raw, (d[:, None] * (q.astype(np.float64) - 8)).reshape(-1)


def _q4_1(rng: np.random.Generator, nblocks: int) -> tuple[np.ndarray, np.ndarray]:
    d = 2.0 ** rng.integers(-6, 2, size=nblocks)
    m = rng.integers(-8, 8, size=nblocks) / 4.0
    q = rng.integers(0, 16, size=(nblocks, 32), dtype=np.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)
    raw = np.concatenate([_f16_bytes_vec(d), _f16_bytes_vec(m), packed], axis=1)
    return raw, (d[:, None] * q + m[:, None]).reshape(-1)


def _q4_k(rng: np.random.Generator, nblocks: int) -> tuple[np.ndarray, np.ndarray]:
    """Super-blocks of 256: d, dmin, 12 bytes of packed 6-bit scales/mins, 128 bytes of nibbles."""
    d = 2.0 ** rng.integers(-8, -2, size=nblocks)
    dmin = 2.0 ** rng.integers(-8, -2, size=nblocks)
    scales = rng.integers(0, 256, size=(nblocks, 12), dtype=np.uint8)
    qs = rng.integers(0, 256, size=(nblocks, 128), dtype=np.uint8)
    raw = np.concatenate([_f16_bytes_vec(d), _f16_bytes_vec(dmin), scales, qs], axis=1)
    out = np.zeros((nblocks, 256))
    for b in range(nblocks):
        sc = scales[b].astype(np.int64)

        def scale_min(j: int, sc: np.ndarray = sc) -> tuple[int, int]:
            if j < 4:
                return sc[j] & 63, sc[j + 4] & 63
            return (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4), (sc[j + 4] >> 4) | (
                (sc[j] >> 6) << 4
            )

        for chunk in range(4):  # 64 values per chunk: 32 low nibbles, then 32 high nibbles
            q = qs[b, chunk * 32 : chunk * 32 + 32].astype(np.int64)
            s1, m1 = scale_min(2 * chunk)
            s2, m2 = scale_min(2 * chunk + 1)
            out[b, chunk * 64 : chunk * 64 + 32] = d[b] * s1 * (q & 0xF) - dmin[b] * m1
            out[b, chunk * 64 + 32 : chunk * 64 + 64] = d[b] * s2 * (q >> 4) - dmin[b] * m2
    return raw, out.reshape(-1)


def _q6_k(rng: np.random.Generator, nblocks: int) -> tuple[np.ndarray, np.ndarray]:
    """Super-blocks of 256: 128 bytes low nibbles, 64 bytes high 2-bits, 16 int8 scales, d."""
    ql = rng.integers(0, 256, size=(nblocks, 128), dtype=np.uint8)
    qh = rng.integers(0, 256, size=(nblocks, 64), dtype=np.uint8)
    sc = rng.integers(-128, 128, size=(nblocks, 16), dtype=np.int8)
    d = 2.0 ** rng.integers(-10, -4, size=nblocks)
    raw = np.concatenate([ql, qh, sc.view(np.uint8), _f16_bytes_vec(d)], axis=1)
    out = np.zeros((nblocks, 256))
    for b in range(nblocks):
        for half in range(2):
            lo = ql[b, half * 64 : half * 64 + 64].astype(np.int64)
            hi = qh[b, half * 32 : half * 32 + 32].astype(np.int64)
            s = sc[b, half * 8 : half * 8 + 8].astype(np.int64)
            y = out[b, half * 128 : half * 128 + 128]
            for l in range(32):  # noqa: E741 - ggml's loop variable
                i = l // 16
                y[l] = d[b] * s[i] * (((lo[l] & 0xF) | ((hi[l] & 3) << 4)) - 32)
                y[l + 32] = (
                    d[b] * s[i + 2] * (((lo[l + 32] & 0xF) | (((hi[l] >> 2) & 3) << 4)) - 32)
                )
                y[l + 64] = d[b] * s[i + 4] * (((lo[l] >> 4) | (((hi[l] >> 4) & 3) << 4)) - 32)
                y[l + 96] = d[b] * s[i + 6] * (((lo[l + 32] >> 4) | (((hi[l] >> 6) & 3) << 4)) - 32)
    return raw, out.reshape(-1)


@pytest.mark.parametrize(
    ("qtype", "make", "block"),
    [
        (QT.Q8_0, _q8_0, 32),
        (QT.Q4_0, _q4_0, 32),
        (QT.Q4_1, _q4_1, 32),
        (QT.Q4_K, _q4_k, 256),
        (QT.Q6_K, _q6_k, 256),
    ],
)
def test_quantized_blocks_dequantize_exactly(tmp_path, qtype, make, block):
    rng = np.random.default_rng(int(qtype))
    blocks_per_row = 512 // block
    raw, expected = make(rng, ROWS * blocks_per_row)
    raw = raw.reshape(ROWS, -1)
    got = _read_back(tmp_path, raw, qtype)
    assert got.dtype == torch.float32
    assert got.shape == (ROWS, 512)  # rows stay rows: GGUF's reversed dims are undone
    np.testing.assert_array_equal(got.numpy(), expected.reshape(ROWS, 512).astype(np.float32))


@pytest.mark.parametrize("qtype", [QT.Q8_0, QT.Q4_0, QT.Q4_1])
def test_quantize_then_dequantize_is_close(tmp_path, qtype):
    """gguf's own quantizer → our loader: error bounded by the quantization step."""
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    got = _read_back(tmp_path, gguf.quants.quantize(x, qtype), qtype).numpy()
    step = np.abs(x).max() / (127 if qtype == QT.Q8_0 else 7)
    assert np.abs(got - x).max() <= step
    assert np.abs(got - x).max() > 0  # really went through quantization


def test_float_types_round_trip(tmp_path):
    x = np.random.default_rng(1).standard_normal((5, 7)).astype(np.float32)
    np.testing.assert_array_equal(_read_back(tmp_path, x, QT.F32).numpy(), x)
    half = x.astype(np.float16)
    np.testing.assert_array_equal(
        _read_back(tmp_path, half, QT.F16).numpy(), half.astype(np.float32)
    )
    bf16 = torch.from_numpy(x).to(torch.bfloat16)
    raw = bf16.view(torch.int16).numpy().view(np.uint8).reshape(5, 14)
    np.testing.assert_array_equal(_read_back(tmp_path, raw, QT.BF16).numpy(), bf16.float().numpy())


def test_read_tensor_unknown_name(tmp_path):
    _read_back(tmp_path, np.zeros((2, 2), dtype=np.float32), QT.F32)
    with pytest.raises(KeyError, match="nope"):
        GGUFFile(tmp_path / "t.gguf").read_tensor("nope")
