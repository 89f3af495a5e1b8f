"""The load: prompts every target gets, the async streaming client and the measured phases.

Prompts are cut from the Shakespeare corpus in token units, so lengths are what the brief asks
for, and every request of a run is distinct (no accidental prefix-cache wins) unless a phase
shares a prefix on purpose (the cached-TTFT probe).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

CORPUS = Path(__file__).resolve().parents[2] / "src/slipstream/bench/corpus/shakespeare.txt"
SYSTEM = "You are a helpful assistant."
INSTRUCTION = "Continue the following text in the same style.\n\n"
Messages = list[dict[str, str]]


@dataclass(frozen=True)
class PromptSet:
    """Deterministic prompts: per-level chat prompts, long-prompt pairs and short RSS prompts."""

    levels: dict[int, list[Messages]]
    single: Messages
    long_pairs: list[tuple[Messages, Messages]]  # (cold ~1,000 tokens, same ~900 + new tail)
    short: list[Messages]


def chat(text: str) -> Messages:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": INSTRUCTION + text}]


def build_prompts(
    tokenizer, level_sizes: dict[int, int], long_samples: int, short_count: int
) -> PromptSet:
    """Slice the corpus into distinct excerpts of 110-170 tokens (~130-200 with the template)."""
    ids = tokenizer(CORPUS.read_text()).input_ids
    cursor = 0

    def take(n: int) -> str:
        nonlocal cursor
        if cursor + n > len(ids):
            cursor = 0  # corpus exhausted: wrap (only for very large runs)
        text = tokenizer.decode(ids[cursor : cursor + n])
        cursor += n
        return text

    lengths = [110 + (17 * i) % 61 for i in range(sum(level_sizes.values()) + 1)]
    levels = {c: [chat(take(lengths.pop())) for _ in range(n)] for c, n in level_sizes.items()}
    single = chat(take(150))
    overhead = len(tokenizer.apply_chat_template(chat(""), add_generation_prompt=True))
    long_pairs = []
    for _ in range(long_samples):
        head, cold_tail, warm_tail = take(900 - overhead), take(100), take(100)
        long_pairs.append((chat(head + cold_tail), chat(head + warm_tail)))
    excerpts = [take(24) for _ in range(min(short_count, 1000))]
    # The leading number keeps every short prompt distinct even when excerpts repeat.
    short = [chat(f"Passage {i}: {excerpts[i % len(excerpts)]}") for i in range(short_count)]
    return PromptSet(levels, single, long_pairs, short)


@dataclass
class Record:
    """One streamed request as the client saw it."""

    start: float
    first: float | None = None
    last: float | None = None
    end: float = 0.0
    chunks: int = 0
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    error: str | None = None

    @property
    def tokens(self) -> int:
        return self.completion_tokens if self.completion_tokens is not None else self.chunks

    @property
    def ttft(self) -> float | None:
        return None if self.first is None else self.first - self.start


class Client:
    """Streams /v1/chat/completions with the target's body extras; never raises on a request."""

    def __init__(self, base_url: str, model: str, extra: dict, max_connections: int) -> None:
        self.url = f"{base_url}/v1/chat/completions"
        self.model, self.extra = model, extra
        limits = httpx.Limits(
            max_connections=max_connections + 4, max_keepalive_connections=max_connections + 4
        )
        self.http = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(600.0))

    async def close(self) -> None:
        await self.http.aclose()

    async def stream(self, messages: Messages, max_tokens: int) -> Record:
        body = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "temperature": 0.0,
            "max_tokens": max_tokens,
            "stream_options": {"include_usage": True},
            **self.extra,
        }
        rec = Record(start=time.perf_counter())
        try:
            async with self.http.stream("POST", self.url, json=body) as resp:
                if resp.status_code != 200:
                    rec.error = f"HTTP {resp.status_code}: {(await resp.aread())[:200]!r}"
                    return rec
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    self._absorb(rec, json.loads(data))
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            rec.error = f"{type(exc).__name__}: {exc}"
        finally:
            rec.end = time.perf_counter()
        return rec

    @staticmethod
    def _absorb(rec: Record, chunk: dict) -> None:
        now = time.perf_counter()
        for choice in chunk.get("choices") or []:
            if (choice.get("delta") or {}).get("content"):
                rec.chunks += 1
                rec.first = rec.first or now
                rec.last = now
        usage = chunk.get("usage")
        if usage:
            rec.completion_tokens = usage.get("completion_tokens")
            rec.prompt_tokens = usage.get("prompt_tokens")
            rec.cached_tokens = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")

    async def closed_loop(
        self, prompts: list[Messages], concurrency: int, max_tokens: int
    ) -> tuple[list[Record], float]:
        """`concurrency` workers each send their next prompt as soon as the last one ends."""
        queue: asyncio.Queue[Messages] = asyncio.Queue()
        for p in prompts:
            queue.put_nowait(p)
        records: list[Record] = []

        async def worker() -> None:
            while not queue.empty():
                records.append(await self.stream(queue.get_nowait(), max_tokens))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return records, time.perf_counter() - t0


def p50(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(records: list[Record], wall_s: float) -> dict:
    ok = [r for r in records if r.error is None]
    tokens = sum(r.tokens for r in ok)
    return {
        "requests": len(records),
        "errors": len(records) - len(ok),
        "first_error": next((r.error for r in records if r.error), None),
        "wall_s": round(wall_s, 3),
        "output_tokens": tokens,
        "tok_s": round(tokens / wall_s, 2) if wall_s > 0 else None,
        "mean_completion_tokens": round(tokens / len(ok), 1) if ok else None,
        "mean_prompt_tokens": _mean([r.prompt_tokens for r in ok if r.prompt_tokens]),
        "ttft_p50_ms": _ms(p50([r.ttft for r in ok if r.ttft is not None])),
    }


def decode_rate(rec: Record) -> float | None:
    """Tokens/s after the first token: (n - 1) over the time from first to last chunk."""
    if rec.error or rec.first is None or rec.last is None or rec.last <= rec.first:
        return None
    return (rec.tokens - 1) / (rec.last - rec.first)


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 1) if values else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
