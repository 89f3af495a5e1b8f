"""`Tokenizer`: text ↔ ids, chat template and stop tokens for one model, from an HF dir or a GGUF.

Wraps a `tokenizers.Tokenizer` (Rust, fast) rather than transformers, so the serving path does
not import transformers at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as BackendTokenizer

from slipstream.engine.loader.chat_template import CHATML_TEMPLATE, ChatTemplate
from slipstream.engine.loader.detokenizer import IncrementalDetokenizer
from slipstream.engine.loader.errors import ModelNotFoundError
from slipstream.engine.loader.gguf_vocab import tokenizer_from_gguf_metadata
from slipstream.engine.loader.hf_dir import read_json

# Tokens that close an assistant turn in common chat templates; generation must stop on them
# even when the model's configured EOS is a different token.
END_OF_TURN_TOKENS: tuple[str, ...] = (
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
)


class Tokenizer:
    """Encode/decode, chat template rendering and end-of-sequence ids for one model."""

    def __init__(
        self,
        backend: BackendTokenizer,
        chat_template: str | None = None,
        bos_token_id: int | None = None,
        eos_token_ids: tuple[int, ...] | list[int] = (),
    ) -> None:
        self._backend = backend
        self.bos_token_id = bos_token_id
        self.has_chat_template = chat_template is not None
        template = chat_template if chat_template is not None else CHATML_TEMPLATE
        eos = [i for i in eos_token_ids if i is not None]
        self.eos_token_id: int | None = eos[0] if eos else None
        for token in END_OF_TURN_TOKENS:
            token_id = backend.token_to_id(token)
            if token_id is not None and (token in template or token_id in eos):
                eos.append(token_id)
        self.eos_token_ids: frozenset[int] = frozenset(eos)
        self.chat_template = ChatTemplate(
            source=template,
            bos_token=self._token_text(bos_token_id),
            eos_token=self._token_text(self.eos_token_id),
        )

    def _token_text(self, token_id: int | None) -> str:
        if token_id is None:
            return ""
        return self._backend.id_to_token(token_id) or ""

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_gguf_metadata(cls, metadata: dict[str, Any]) -> Tokenizer:
        eos = [
            metadata.get("tokenizer.ggml.eos_token_id"),
            metadata.get("tokenizer.ggml.eot_token_id"),
        ]
        return cls(
            tokenizer_from_gguf_metadata(metadata),
            chat_template=metadata.get("tokenizer.chat_template"),
            bos_token_id=metadata.get("tokenizer.ggml.bos_token_id"),
            eos_token_ids=[int(e) for e in eos if e is not None],
        )

    @classmethod
    def from_hf_dir(cls, path: str | Path) -> Tokenizer:
        """From tokenizer.json + tokenizer_config.json (+ chat_template.jinja, config.json,
        generation_config.json for special ids)."""
        path = Path(path)
        tokenizer_json = path / "tokenizer.json"
        if not tokenizer_json.is_file():
            raise ModelNotFoundError(
                f"No tokenizer in {path}: {tokenizer_json} does not exist (only fast "
                "tokenizers saved as tokenizer.json are supported)."
            )
        backend = BackendTokenizer.from_file(str(tokenizer_json))
        config = _optional_json(path / "tokenizer_config.json")
        model_config = _optional_json(path / "config.json")
        generation = _optional_json(path / "generation_config.json")

        def token_id(key: str) -> int | None:
            token = config.get(key)
            if isinstance(token, dict):
                token = token.get("content")
            return backend.token_to_id(token) if isinstance(token, str) else None

        bos = token_id("bos_token")
        if bos is None:
            bos = generation.get("bos_token_id", model_config.get("bos_token_id"))
        eos: list[int] = []
        for source in (
            token_id("eos_token"),
            generation.get("eos_token_id"),
            model_config.get("eos_token_id"),
        ):
            eos.extend(
                source if isinstance(source, list) else [source] if source is not None else []
            )
        return cls(
            backend,
            chat_template=_hf_chat_template(path, config),
            bos_token_id=bos,
            eos_token_ids=list(dict.fromkeys(eos)),
        )

    # -- text <-> ids ------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    @property
    def backend(self) -> BackendTokenizer:
        return self._backend

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self._backend.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def id_to_piece(self, token_id: int) -> str:
        """The text of one token on its own (for logprobs); special tokens are kept."""
        return self._backend.decode([token_id], skip_special_tokens=False)

    def token_to_id(self, token: str) -> int | None:
        return self._backend.token_to_id(token)

    def new_detokenizer(self, skip_special_tokens: bool = True) -> IncrementalDetokenizer:
        return IncrementalDetokenizer(self._backend, skip_special_tokens=skip_special_tokens)

    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> str:
        return self.chat_template.render(
            messages, add_generation_prompt=add_generation_prompt, tools=tools, **kwargs
        )


def _optional_json(path: Path) -> dict[str, Any]:
    return read_json(path) if path.is_file() else {}


def _hf_chat_template(path: Path, config: dict[str, Any]) -> str | None:
    """chat_template.jinja (transformers ≥4.50) or tokenizer_config.json's `chat_template`
    (a string, or a list of named templates of which we take "default")."""
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) else None
