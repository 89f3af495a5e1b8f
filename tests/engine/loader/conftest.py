"""Shared fixtures: the real SmolLM2 GGUF and tokenizers built from it (loaded once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipstream.engine.loader import Tokenizer, load_tokenizer, resolve_model


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    return resolve_model("smollm2-135m").path


@pytest.fixture(scope="session")
def smollm2_tokenizer() -> Tokenizer:
    return load_tokenizer("smollm2-135m")


@pytest.fixture(scope="session")
def reference_tokenizer(smollm2_gguf: Path):
    """transformers' own GGUF → tokenizer conversion of the same file, as the reference."""
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(
        str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name
    )
