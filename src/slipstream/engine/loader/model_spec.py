"""`ModelSpec`: the shape of a Llama-family decoder, independent of where the weights came from.

The same spec is built from a Hugging Face `config.json` or from GGUF metadata, so the model code
never needs to know which file format it was loaded from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slipstream.engine.loader.errors import UnsupportedModelError

SUPPORTED_ARCHITECTURES: tuple[str, ...] = ("llama", "mistral", "qwen2", "qwen3")


def check_architecture(architecture: str) -> str:
    """Return `architecture` if supported, else raise an error naming the supported ones."""
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(
            f"Unsupported model architecture {architecture!r}; "
            f"supported architectures: {', '.join(SUPPORTED_ARCHITECTURES)}."
        )
    return architecture


@dataclass(frozen=True)
class ModelSpec:
    """Hyper-parameters of a Llama-family decoder (Llama, Mistral, Qwen2, Qwen3).

    `rope_scaling` uses the Hugging Face format (e.g. `{"rope_type": "llama3", "factor": 8.0, ...}`)
    or is None for plain RoPE. `rope_freq_factors` is set only for GGUF files that store llama3-style
    per-frequency divisors as a tensor (`rope_freqs.weight`) instead of scaling parameters: the
    rotary inverse frequencies must then be divided by these factors.
    """

    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict[str, Any] | None
    max_position_embeddings: int
    tie_word_embeddings: bool
    attention_bias: bool
    qk_norm: bool
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]
    rope_freq_factors: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        check_architecture(self.architecture)
        if self.num_heads % self.num_kv_heads != 0:
            raise UnsupportedModelError(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads "
                f"({self.num_kv_heads})."
            )

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @classmethod
    def from_hf_config(cls, config: dict[str, Any]) -> ModelSpec:
        """Build from a parsed `config.json` (transformers 4.x `rope_theta`/`rope_scaling` or 5.x
        `rope_parameters`)."""
        architecture = check_architecture(_hf_architecture(config))
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        rope_theta, rope_scaling = _hf_rope(config)
        eos = config.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (int(eos),))
        return cls(
            architecture=architecture,
            vocab_size=int(config["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(config["intermediate_size"]),
            num_layers=int(config["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            rope_theta=rope_theta,
            rope_scaling=rope_scaling,
            max_position_embeddings=int(config.get("max_position_embeddings", 2048)),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            # Qwen2 always has q/k/v biases and its config has no flag for it.
            attention_bias=bool(config.get("attention_bias", architecture == "qwen2")),
            qk_norm=architecture == "qwen3",
            bos_token_id=config.get("bos_token_id"),
            eos_token_ids=tuple(int(e) for e in eos_ids),
        )


def _hf_architecture(config: dict[str, Any]) -> str:
    model_type = config.get("model_type")
    if model_type:
        return str(model_type)
    names = config.get("architectures") or ["<missing model_type>"]
    return str(names[0])


def _hf_rope(config: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    """(rope_theta, rope_scaling in HF format or None) from either config generation."""
    params = config.get("rope_parameters")
    if isinstance(params, dict):
        theta = float(params.get("rope_theta", config.get("rope_theta", 10000.0)))
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    else:
        theta = float(config.get("rope_theta", 10000.0))
        scaling = dict(config.get("rope_scaling") or {})
    if "type" in scaling and "rope_type" not in scaling:
        scaling["rope_type"] = scaling.pop("type")
    if scaling.get("rope_type", "default") == "default":
        return theta, None
    return theta, scaling
