"""A Hugging Face model directory (config.json + *.safetensors) → ModelSpec + float32 weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from slipstream.engine.loader.errors import ModelNotFoundError, UnsupportedModelError
from slipstream.engine.loader.model_spec import ModelSpec


def read_json(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise UnsupportedModelError(f"{path} does not contain a JSON object.")
    return data


class HFModelDir:
    """A local Hugging Face checkpoint directory, sharded or not."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        config_path = self.path / "config.json"
        if not config_path.is_file():
            raise ModelNotFoundError(
                f"{self.path} is not a Hugging Face model directory: {config_path} does not exist."
            )
        self.config = read_json(config_path)

    def spec(self) -> ModelSpec:
        return ModelSpec.from_hf_config(self.config)

    def weight_files(self) -> list[Path]:
        """The safetensors files, in index order when an index exists (sharded checkpoints)."""
        index = self.path / "model.safetensors.index.json"
        if index.is_file():
            weight_map: dict[str, str] = read_json(index)["weight_map"]
            files = [self.path / name for name in dict.fromkeys(weight_map.values())]
        else:
            files = sorted(self.path.glob("*.safetensors"))
        if not files:
            raise ModelNotFoundError(
                f"No *.safetensors weights in {self.path} (only safetensors checkpoints are "
                "supported, not pytorch_model.bin)."
            )
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise ModelNotFoundError(f"Missing weight shards in {self.path}: {', '.join(missing)}")
        return files

    def load_weights(self, spec: ModelSpec | None = None) -> dict[str, torch.Tensor]:
        """All tensors as float32, HF names unchanged; `lm_head.weight` dropped when tied."""
        spec = spec or self.spec()
        weights: dict[str, torch.Tensor] = {}
        for file in self.weight_files():
            with safe_open(str(file), framework="pt") as f:
                for name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                    weights[name] = f.get_tensor(name).to(torch.float32)
        if spec.tie_word_embeddings:
            weights.pop("lm_head.weight", None)
        elif "lm_head.weight" not in weights:
            raise UnsupportedModelError(
                f"{self.path}: config says tie_word_embeddings=false but lm_head.weight is missing."
            )
        return weights
