"""Streaming token ids → text without ever emitting half a character.

Decoding token by token breaks on byte-level vocabularies (one emoji can span several tokens)
and on sentencepiece's leading-space rules. Like vLLM, we decode a short window of ids twice
— up to the last emitted token and up to the newest one — and emit only the difference, holding
it back while it ends in an incomplete UTF-8 sequence (U+FFFD).
"""

from __future__ import annotations

from tokenizers import Tokenizer as BackendTokenizer

_REPLACEMENT_CHAR = "\ufffd"


class IncrementalDetokenizer:
    """Per-sequence decoder state. `push` returns newly completed text; `flush` the remainder.

    The concatenation of every `push` result followed by `flush()` equals
    `decode(all_ids)` for the same `skip_special_tokens` setting.
    """

    def __init__(self, backend: BackendTokenizer, skip_special_tokens: bool = True) -> None:
        self._backend = backend
        self._skip_special_tokens = skip_special_tokens
        self._ids: list[int] = []
        self._prefix_offset = 0  # start of the decode window (context for the next token)
        self._read_offset = 0  # ids before this have been emitted as text

    @property
    def token_ids(self) -> list[int]:
        return list(self._ids)

    def _decode(self, ids: list[int]) -> str:
        return self._backend.decode(ids, skip_special_tokens=self._skip_special_tokens)

    def _delta(self) -> str:
        window = self._ids[self._prefix_offset :]
        emitted = self._decode(self._ids[self._prefix_offset : self._read_offset])
        text = self._decode(window)
        return text[len(emitted) :]

    def _advance(self, delta: str) -> None:
        # Only move the window start past tokens that produced text: a window starting at an
        # empty-text token (a skipped special) would let decoders strip the next token's space.
        if delta:
            self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)

    def push(self, token_ids: list[int]) -> str:
        """Add generated ids; return the text they complete (possibly empty)."""
        self._ids.extend(token_ids)
        if not token_ids:
            return ""
        delta = self._delta()
        if delta.endswith(_REPLACEMENT_CHAR):
            return ""  # incomplete UTF-8 sequence: wait for the next token
        self._advance(delta)
        return delta

    def flush(self) -> str:
        """Whatever is still held back (e.g. a truncated character at the end of generation)."""
        if self._read_offset == len(self._ids):
            return ""
        delta = self._delta()
        self._advance(delta)
        return delta
