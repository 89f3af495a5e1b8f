"""The SmolLM2 tokenizer rebuilt from GGUF metadata vs transformers' conversion of the same file."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream.engine.loader import Tokenizer

TEXTS = [
    "Hello, world!",
    "digits 1234567890 and 3.14159, 1e-10, x=42",
    "  leading spaces,\ttabs\n\nand newlines  \n",
    "Ünïcödé: naïve café, 日本語のテキスト, Ελληνικά, русский",
    "emoji 😀👍🏽 🇫🇷 👨‍👩‍👧",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "don't I'll we've THEY'RE",
    "def f(x):\n    return x ** 2  # comment",
]


@pytest.mark.parametrize("text", TEXTS)
def test_encode_decode_match_transformers(smollm2_tokenizer, reference_tokenizer, text):
    ids = smollm2_tokenizer.encode(text)
    assert ids == reference_tokenizer(text, add_special_tokens=False).input_ids
    assert (
        smollm2_tokenizer.encode(text, add_special_tokens=True)
        == reference_tokenizer(text).input_ids
    )
    assert smollm2_tokenizer.decode(ids, skip_special_tokens=False) == text
    assert smollm2_tokenizer.decode(ids) == reference_tokenizer.decode(
        ids, skip_special_tokens=True
    )


def test_special_tokens_are_single_ids(smollm2_tokenizer):
    im_start, im_end = smollm2_tokenizer.encode("<|im_start|><|im_end|>")
    assert smollm2_tokenizer.id_to_piece(im_start) == "<|im_start|>"
    assert smollm2_tokenizer.id_to_piece(im_end) == "<|im_end|>"
    assert im_end in smollm2_tokenizer.eos_token_ids
    assert smollm2_tokenizer.bos_token_id == im_start
    assert smollm2_tokenizer.decode([im_start, *smollm2_tokenizer.encode("hi"), im_end]) == "hi"


def test_id_to_piece_and_vocab_size(smollm2_tokenizer, reference_tokenizer):
    assert smollm2_tokenizer.vocab_size == len(reference_tokenizer) == 49152
    for token_id in smollm2_tokenizer.encode(" naïve 42"):
        assert smollm2_tokenizer.id_to_piece(token_id) == reference_tokenizer.decode([token_id])


CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Tell me a joke 😀"},
    ],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_chat_template_matches_transformers(
    smollm2_tokenizer, reference_tokenizer, messages, add_generation_prompt
):
    ours = smollm2_tokenizer.apply_chat_template(
        messages, add_generation_prompt=add_generation_prompt
    )
    theirs = reference_tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    assert ours == theirs


def test_chat_template_flattens_content_parts(smollm2_tokenizer):
    parts = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "you"}],
        }
    ]
    plain = [{"role": "user", "content": "Hi you"}]
    assert smollm2_tokenizer.apply_chat_template(parts) == smollm2_tokenizer.apply_chat_template(
        plain
    )


def test_hf_dir_tokenizer_matches_gguf_tokenizer(tmp_path, smollm2_tokenizer, reference_tokenizer):
    """Save transformers' tokenizer as tokenizer.json + config; load it as an HF directory."""
    reference_tokenizer.save_pretrained(tmp_path)
    from_dir = Tokenizer.from_hf_dir(tmp_path)
    for text in TEXTS:
        assert from_dir.encode(text) == smollm2_tokenizer.encode(text)
    messages = CONVERSATIONS[1]
    assert from_dir.apply_chat_template(messages) == smollm2_tokenizer.apply_chat_template(messages)
    assert from_dir.eos_token_ids == smollm2_tokenizer.eos_token_ids
    assert from_dir.bos_token_id == smollm2_tokenizer.bos_token_id


def test_streaming_emoji_never_emits_partial_characters(smollm2_tokenizer):
    text = "emoji 😀👍🏽 🇫🇷 naïve 日本語"
    ids = smollm2_tokenizer.encode(text)
    assert len(ids) > len(text.split())  # some characters span several byte-level tokens
    detok = smollm2_tokenizer.new_detokenizer()
    pieces = [detok.push([i]) for i in ids]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) + detok.flush() == text
    assert "" in pieces  # at least one push was held back


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_detokenizer_concatenation_equals_decode(smollm2_tokenizer, data):
    ids = data.draw(st.lists(st.integers(0, smollm2_tokenizer.vocab_size - 1), max_size=40))
    chunks: list[list[int]] = []
    rest = list(ids)
    while rest:
        n = data.draw(st.integers(1, 4))
        chunks.append(rest[:n])
        rest = rest[n:]
    for skip in (True, False):
        detok = smollm2_tokenizer.new_detokenizer(skip_special_tokens=skip)
        streamed = "".join(detok.push(chunk) for chunk in chunks) + detok.flush()
        assert streamed == smollm2_tokenizer.decode(ids, skip_special_tokens=skip)


def _sentencepiece_metadata() -> dict:
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    words = ["▁hello", "▁world", "▁", "h", "e", "l", "o", "w", "r", "d", "▁he", "llo"]
    tokens = pieces + words
    return {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": [0.0] * len(pieces) + [-1.0, -1.0, -3.0] + [-5.0] * 9,
        "tokenizer.ggml.token_type": [2, 3, 3] + [6] * 256 + [1] * len(words),
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.chat_template": "{{ bos_token }}{% for m in messages %}[{{ m['content'] }}]{% endfor %}",
    }


def test_sentencepiece_gguf_vocab_best_effort():
    tok = Tokenizer.from_gguf_metadata(_sentencepiece_metadata())
    hello, world = tok.token_to_id("▁hello"), tok.token_to_id("▁world")
    assert tok.encode("hello world") == [hello, world]
    assert tok.encode("hello world", add_special_tokens=True) == [1, hello, world]
    ids = tok.encode("hello é")  # "é" is not in the vocabulary: byte fallback
    assert ids[-2:] == [3 + 0xC3, 3 + 0xA9]
    assert tok.decode(ids) == "hello é"
    detok = tok.new_detokenizer()
    assert "".join(detok.push([i]) for i in ids) + detok.flush() == "hello é"
    assert tok.apply_chat_template([{"role": "user", "content": "x"}]) == "<s>[x]"
    assert tok.eos_token_ids == frozenset({2})
