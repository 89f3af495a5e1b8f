"""The shipped public-domain text and the token counter used to cut prompts from it.

Prompts are real English (Shakespeare, from Project Gutenberg-era public-domain text), cut at a
random offset so requests do not share prefixes by accident. Lengths are counted with the
served model's tokenizer when one is given (``tokenizer.json``), else with a word/punctuation
estimate that is close to BPE counts for English prose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Protocol

_WORDS = re.compile(r"\w+|[^\w\s]")
CORPUS_FILE = "shakespeare.txt"


class TokenCounter(Protocol):
    """Counts tokens and gives token spans (character offsets) of a text."""

    name: str

    def spans(self, text: str) -> list[tuple[int, int]]: ...

    def count(self, text: str) -> int: ...


@dataclass
class EstimateCounter:
    """One token per word and per punctuation mark: no dependency, stable across runs."""

    name: str = "estimate"

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORDS.finditer(text)]

    def count(self, text: str) -> int:
        return sum(1 for _ in _WORDS.finditer(text))


@dataclass
class HFTokenizerCounter:
    """The model's own tokenizer from a ``tokenizer.json`` file (``tokenizers`` package)."""

    path: str
    name: str = "tokenizer"
    _tok: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(self.path)
        self.name = f"tokenizer:{Path(self.path).name}"

    def spans(self, text: str) -> list[tuple[int, int]]:
        return list(self._tok.encode(text, add_special_tokens=False).offsets)  # type: ignore[attr-defined]

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)  # type: ignore[attr-defined]


def make_counter(tokenizer: str | None) -> TokenCounter:
    return HFTokenizerCounter(tokenizer) if tokenizer else EstimateCounter()


def load_corpus_text() -> str:
    return (resources.files("slipstream.bench") / "corpus" / CORPUS_FILE).read_text("utf-8")


@dataclass
class Corpus:
    """Corpus text pre-split into token spans, so any token window is one slice."""

    text: str
    spans: list[tuple[int, int]]

    @classmethod
    def load(cls, counter: TokenCounter) -> Corpus:
        text = load_corpus_text()
        return cls(text, counter.spans(text))

    def window(self, start: int, n_tokens: int) -> str:
        """Text of ``n_tokens`` tokens starting at token ``start`` (wrapping around the end)."""
        total = len(self.spans)
        n_tokens = max(1, n_tokens)
        start %= total
        if start + n_tokens <= total:
            return self.text[self.spans[start][0] : self.spans[start + n_tokens - 1][1]]
        head = self.text[self.spans[start][0] :]
        return head + " " + self.window(0, n_tokens - (total - start))
