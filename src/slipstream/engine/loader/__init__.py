"""Model loading from local files: GGUF or Hugging Face directories → spec, weights, tokenizer.

`load_model` dequantizes everything to float32 HF-named tensors; `load_tokenizer` reads only
the vocabulary (cheap enough for the HTTP front end, which never needs weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from slipstream.engine.loader.chat_template import ChatTemplate, ChatTemplateError
from slipstream.engine.loader.detokenizer import IncrementalDetokenizer
from slipstream.engine.loader.errors import ModelNotFoundError, UnsupportedModelError
from slipstream.engine.loader.gguf_file import GGUFFile
from slipstream.engine.loader.gguf_metadata import read_gguf_metadata
from slipstream.engine.loader.hf_dir import HFModelDir
from slipstream.engine.loader.model_spec import SUPPORTED_ARCHITECTURES, ModelSpec
from slipstream.engine.loader.registry import ModelSource, known_model_names, resolve_model
from slipstream.engine.loader.tokenizer import Tokenizer

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "ChatTemplate",
    "ChatTemplateError",
    "IncrementalDetokenizer",
    "LoadedModel",
    "ModelNotFoundError",
    "ModelSource",
    "ModelSpec",
    "Tokenizer",
    "UnsupportedModelError",
    "known_model_names",
    "load_model",
    "load_tokenizer",
    "resolve_model",
]


@dataclass
class LoadedModel:
    """A model's spec and float32 weights under Hugging Face parameter names."""

    spec: ModelSpec
    weights: dict[str, torch.Tensor]
    name: str
    path: Path
    # weights were block-quantized in the file (GGUF Q4/Q8/K-quants), not float
    block_quantized: bool = False


def load_model(name_or_path: str | Path) -> LoadedModel:
    """Resolve, read and dequantize a model (a few seconds for SmolLM2-135M on CPU)."""
    source = resolve_model(name_or_path)
    reader: GGUFFile | HFModelDir
    reader = GGUFFile(source.path) if source.format == "gguf" else HFModelDir(source.path)
    spec = reader.spec()
    return LoadedModel(
        spec=spec,
        weights=reader.load_weights(spec),
        name=source.name,
        path=source.path,
        block_quantized=isinstance(reader, GGUFFile) and reader.block_quantized(),
    )


def load_tokenizer(name_or_path: str | Path) -> Tokenizer:
    """The model's tokenizer, without touching its weights."""
    source = resolve_model(name_or_path)
    if source.format == "gguf":
        return Tokenizer.from_gguf_metadata(read_gguf_metadata(source.path))
    return Tokenizer.from_hf_dir(source.path)
