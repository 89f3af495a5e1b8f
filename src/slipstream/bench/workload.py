"""What each request asks for: prompt text, sampled lengths, shared prefixes, request bodies.

Request ``i`` is a pure function of ``(seed, i)`` so every worker process can build its own
share of the requests without shipping prompts between processes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import orjson

from slipstream.bench.corpus import Corpus, TokenCounter, make_counter
from slipstream.bench.dataset import DatasetItem, load_dataset
from slipstream.bench.lengths import LengthDist
from slipstream.bench.trace import TraceEntry, load_trace


@dataclass(frozen=True)
class SharedPrefix:
    """``count`` system prompts of ``tokens`` tokens, used by a ``fraction`` of requests."""

    count: int
    tokens: int
    fraction: float = 1.0

    @classmethod
    def parse(cls, text: str) -> SharedPrefix:
        """``COUNT:TOKENS[:FRACTION]``, e.g. ``4:256:0.5``."""
        parts = text.split(":")
        try:
            count, tokens = int(parts[0]), int(parts[1])
            fraction = float(parts[2]) if len(parts) > 2 else 1.0
        except (IndexError, ValueError):
            raise ValueError(
                f"bad --shared-prefix {text!r}: expected COUNT:TOKENS[:FRACTION]"
            ) from None
        if count < 1 or tokens < 1 or not 0.0 <= fraction <= 1.0:
            raise ValueError(
                f"bad --shared-prefix {text!r}: COUNT, TOKENS >= 1 and 0 <= FRACTION <= 1"
            )
        return cls(count, tokens, fraction)


@dataclass(frozen=True)
class WorkloadConfig:
    model: str
    input: LengthDist = field(default_factory=lambda: LengthDist("fixed", 128))
    output: LengthDist = field(default_factory=lambda: LengthDist("fixed", 128))
    endpoint: str = "chat"  # "chat" (/chat/completions) or "completions"
    shared_prefix: SharedPrefix | None = None
    dataset: str | None = None
    tokenizer: str | None = None
    ignore_eos: bool = True
    output_from_dataset: bool = False
    extra_body: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    trace: str | None = None  # lengths per request from a recorded trace (see trace.py)
    trace_time_unit: str = "s"
    turns: int = 1  # > 1: multi-turn sessions; request index = session * turns + turn
    think_time: float = 0.0  # mean seconds between a reply's end and the next turn
    think_stddev: float = 0.0

    def __post_init__(self) -> None:
        if self.turns < 1:
            raise ValueError(f"--turns must be >= 1, got {self.turns}")
        if self.think_time < 0 or self.think_stddev < 0:
            raise ValueError("--think-time MEAN[,STDDEV] must be >= 0")

    def think(self, rng: random.Random) -> float:
        if self.think_stddev <= 0:
            return self.think_time
        return max(0.0, rng.gauss(self.think_time, self.think_stddev))


@dataclass(frozen=True)
class RequestSpec:
    index: int
    body: bytes
    input_tokens: int  # as counted by the workload's counter (prompt + shared prefix)
    max_tokens: int
    prefix_id: int | None


class Workload:
    """Builds request bodies; loads the corpus (or dataset) once per process."""

    def __init__(self, config: WorkloadConfig) -> None:
        self.config = config
        self.counter: TokenCounter = make_counter(config.tokenizer)
        self.corpus = Corpus.load(self.counter)
        self.items: list[DatasetItem] = load_dataset(config.dataset) if config.dataset else []
        if self.items:
            random.Random(config.seed).shuffle(self.items)
        self.trace: list[TraceEntry] = (
            load_trace(config.trace, config.trace_time_unit) if config.trace else []
        )
        sp = config.shared_prefix
        rng = random.Random(f"{config.seed}:prefix")
        self.prefixes = (
            [self._text(rng, sp.tokens) for _ in range(sp.count)] if sp is not None else []
        )

    def _text(self, rng: random.Random, n_tokens: int) -> str:
        return self.corpus.window(rng.randrange(len(self.corpus.spans)), n_tokens)

    def turn_request(
        self, session: int, turn: int, history: list[dict[str, str]]
    ) -> tuple[RequestSpec, list[dict[str, str]]]:
        """Turn ``turn`` of a session: the conversation so far plus a new user message.

        Returns the spec and the messages sent (the caller appends the reply to them).
        """
        cfg = self.config
        index = session * cfg.turns + turn
        if turn == 0:
            spec, messages = self._build(index)
            return spec, messages
        rng = random.Random(cfg.seed * 1_000_003 + index)
        max_tokens = cfg.output.sample(rng)
        user = {"role": "user", "content": self._text(rng, cfg.input.sample(rng))}
        messages = [*history, user]
        prefix_id = next(
            (i for i, p in enumerate(self.prefixes) if history and history[0]["content"] == p),
            None,
        )
        input_tokens = sum(self.counter.count(str(m.get("content", ""))) for m in messages)
        body = self._body(messages, max_tokens)
        return RequestSpec(index, body, input_tokens, max_tokens, prefix_id), messages

    def request(self, index: int) -> RequestSpec:
        return self._build(index)[0]

    def _build(self, index: int) -> tuple[RequestSpec, list[dict[str, str]]]:
        cfg = self.config
        rng = random.Random(cfg.seed * 1_000_003 + index)
        max_tokens = cfg.output.sample(rng)
        entry = self.trace[index % len(self.trace)] if self.trace else None
        if entry is not None:
            max_tokens = entry.output_tokens
        if self.items:
            item = self.items[index % len(self.items)]
            messages = [dict(m) for m in item.messages]
            if cfg.output_from_dataset:
                ref = item.output_tokens or (self.counter.count(item.answer) if item.answer else 0)
                max_tokens = ref or max_tokens
        else:
            n_in = entry.input_tokens if entry is not None else cfg.input.sample(rng)
            messages = [{"role": "user", "content": self._text(rng, n_in)}]
        prefix_id = None
        if self.prefixes and rng.random() < cfg.shared_prefix.fraction:  # type: ignore[union-attr]
            prefix_id = rng.randrange(len(self.prefixes))
            messages.insert(0, {"role": "system", "content": self.prefixes[prefix_id]})
        input_tokens = sum(self.counter.count(str(m.get("content", ""))) for m in messages)
        body = self._body(messages, max_tokens)
        return RequestSpec(index, body, input_tokens, max_tokens, prefix_id), messages

    def _body(self, messages: list[dict[str, str]], max_tokens: int) -> bytes:
        cfg = self.config
        body: dict[str, Any] = {"model": cfg.model, "max_tokens": max_tokens, "stream": True}
        if cfg.endpoint == "chat":
            body["messages"] = messages
        else:
            body["prompt"] = "\n\n".join(str(m.get("content", "")) for m in messages)
        body["stream_options"] = {"include_usage": True}
        if cfg.ignore_eos:
            body["ignore_eos"] = True
            body["min_tokens"] = max_tokens
        body.update(cfg.extra_body)
        return orjson.dumps(body)
