"""Read a GGUF file: metadata → `ModelSpec`, tensors → HF-named float32 torch tensors.

Every tensor is dequantized once at load (via `gguf.quants.dequantize`), so the model code only
ever sees plain float weights in Hugging Face layout regardless of the file's quantization.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch

from slipstream.engine.loader.errors import UnsupportedModelError
from slipstream.engine.loader.gguf_metadata import read_gguf_metadata
from slipstream.engine.loader.gguf_names import (
    NON_PARAMETER_TENSORS,
    PERMUTED_ARCHITECTURES,
    hf_name,
    unpermute_qk,
)
from slipstream.engine.loader.model_spec import ModelSpec, check_architecture


class GGUFFile:
    """An opened GGUF file. Opening parses the metadata only; tensors are read on first use."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.metadata: dict[str, Any] = read_gguf_metadata(self.path)
        except OSError as exc:
            raise UnsupportedModelError(f"{self.path} is not a readable GGUF file: {exc}") from exc

    @cached_property
    def _reader(self) -> gguf.GGUFReader:
        # Slow (seconds for a large vocabulary: it indexes every metadata element), so deferred.
        try:
            return gguf.GGUFReader(self.path)
        except (ValueError, OSError) as exc:
            raise UnsupportedModelError(f"{self.path} is not a readable GGUF file: {exc}") from exc

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "<missing general.architecture>"))

    def _arch_value(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}", default)

    def _required(self, key: str) -> Any:
        value = self._arch_value(key)
        if value is None:
            raise UnsupportedModelError(
                f"{self.path}: GGUF metadata lacks {self.architecture}.{key}, needed for the model."
            )
        return value

    def block_quantized(self) -> bool:
        """True when some weight is stored in a block-quantized type (Q4_*, Q8_0, K-quants...):
        those values fit the engine's int8/4-bit CPU kernels exactly."""
        floats = {
            gguf.GGMLQuantizationType.F32,
            gguf.GGMLQuantizationType.F16,
            gguf.GGMLQuantizationType.BF16,
        }
        return any(t.tensor_type not in floats for t in self._reader.tensors)

    def tensor_names(self) -> list[str]:
        return [t.name for t in self._reader.tensors]

    def spec(self) -> ModelSpec:
        """The ModelSpec described by the `{arch}.*` and `tokenizer.ggml.*` metadata."""
        arch = check_architecture(self.architecture)
        names = set(self.tensor_names())
        hidden = int(self._required("embedding_length"))
        heads = int(self._required("attention.head_count"))
        kv_heads = self._arch_value("attention.head_count_kv", heads)
        # The embedding's row count, not the token list: some files pad one or the other.
        vocab_size = int(self._tensor("token_embd.weight").shape[1])
        eos_ids = [
            self.metadata[key]
            for key in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id")
            if key in self.metadata
        ]
        return ModelSpec(
            architecture=arch,
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=int(self._required("feed_forward_length")),
            num_layers=int(self._required("block_count")),
            num_heads=heads,
            # head_count_kv may be a per-layer array in some files; all layers equal here.
            num_kv_heads=int(kv_heads[0] if isinstance(kv_heads, list) else kv_heads),
            head_dim=int(self._arch_value("attention.key_length") or hidden // heads),
            rms_norm_eps=float(self._arch_value("attention.layer_norm_rms_epsilon", 1e-6)),
            rope_theta=float(self._arch_value("rope.freq_base", 10000.0)),
            rope_scaling=self._rope_scaling(),
            max_position_embeddings=int(self._arch_value("context_length", 2048)),
            tie_word_embeddings="output.weight" not in names,
            attention_bias="blk.0.attn_q.bias" in names,
            qk_norm="blk.0.attn_q_norm.weight" in names,
            bos_token_id=self.metadata.get("tokenizer.ggml.bos_token_id"),
            eos_token_ids=tuple(dict.fromkeys(int(e) for e in eos_ids)),
            rope_freq_factors=self._rope_freq_factors(),
        )

    def _rope_scaling(self) -> dict[str, Any] | None:
        kind = self._arch_value("rope.scaling.type")
        factor = self._arch_value("rope.scaling.factor")
        if kind in (None, "none") or factor is None:
            return None
        scaling: dict[str, Any] = {"rope_type": str(kind), "factor": float(factor)}
        original = self._arch_value("rope.scaling.original_context_length")
        if original is not None:
            scaling["original_max_position_embeddings"] = int(original)
        return scaling

    def _rope_freq_factors(self) -> tuple[float, ...] | None:
        if "rope_freqs.weight" not in self.tensor_names():
            return None
        return tuple(float(x) for x in self._dequantize(self._tensor("rope_freqs.weight")))

    def _tensor(self, name: str) -> gguf.ReaderTensor:
        for tensor in self._reader.tensors:
            if tensor.name == name:
                return tensor
        raise KeyError(f"No tensor {name!r} in {self.path}")

    @staticmethod
    def _dequantize(tensor: gguf.ReaderTensor) -> np.ndarray:
        """float32 array in numpy/HF dim order (GGUF lists dims fastest-first, i.e. reversed)."""
        try:
            data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        except NotImplementedError as exc:
            raise UnsupportedModelError(
                f"Tensor {tensor.name!r} uses quantization {tensor.tensor_type.name}, "
                "which cannot be dequantized."
            ) from exc
        shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
        if data.size != int(np.prod(shape)):
            raise UnsupportedModelError(
                f"Tensor {tensor.name!r}: dequantized {data.size} values, expected shape {shape}."
            )
        return np.ascontiguousarray(data, dtype=np.float32).reshape(shape)

    def read_tensor(self, gguf_name: str) -> torch.Tensor:
        """One tensor by its GGUF name, dequantized to float32, as stored (no renaming/unpermuting)."""
        return self._to_torch(self._tensor(gguf_name))

    @classmethod
    def _to_torch(cls, tensor: gguf.ReaderTensor) -> torch.Tensor:
        array = cls._dequantize(tensor)
        if tensor.tensor_type == gguf.GGMLQuantizationType.F32:
            array = array.copy()  # F32 is a view of the memory-mapped file: own the memory
        return torch.from_numpy(array)

    def load_weights(self, spec: ModelSpec | None = None) -> dict[str, torch.Tensor]:
        """All parameters, dequantized to float32 and renamed/reordered to HF conventions."""
        spec = spec or self.spec()
        weights: dict[str, torch.Tensor] = {}
        for tensor in self._reader.tensors:
            if tensor.name in NON_PARAMETER_TENSORS:
                continue
            name = hf_name(tensor.name)
            value = self._to_torch(tensor)
            if spec.architecture in PERMUTED_ARCHITECTURES:
                if ".q_proj." in name:
                    value = unpermute_qk(value, spec.num_heads)
                elif ".k_proj." in name:
                    value = unpermute_qk(value, spec.num_kv_heads)
            weights[name] = value
        if spec.tie_word_embeddings:
            weights.pop("lm_head.weight", None)
        return weights
