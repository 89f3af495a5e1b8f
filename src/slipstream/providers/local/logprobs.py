"""Local engine logprobs in the two OpenAI shapes: chat (`content` list) and legacy completions."""

from __future__ import annotations

from slipstream.engine.generation import LogprobEntry
from slipstream.protocol.openai import (
    ChatLogprobs,
    ChatTokenLogprob,
    CompletionLogprobs,
    TopLogprob,
)


def _bytes(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def chat_logprobs(entries: list[LogprobEntry], top_k: int) -> ChatLogprobs:
    return ChatLogprobs(
        content=[
            ChatTokenLogprob(
                token=e.token,
                logprob=e.logprob,
                bytes=_bytes(e.token),
                top_logprobs=[
                    TopLogprob(token=text, logprob=value, bytes=_bytes(text))
                    for text, _tid, value in e.top[:top_k]
                ],
            )
            for e in entries
        ]
    )


def completion_logprobs(
    entries: list[LogprobEntry], top_k: int, text_offset: int = 0
) -> CompletionLogprobs:
    """Legacy shape; `text_offset` is where this batch of tokens starts in the choice text."""
    out = CompletionLogprobs()
    offset = text_offset
    for e in entries:
        out.tokens.append(e.token)
        out.token_logprobs.append(e.logprob)
        tops: dict[str, float] = {}
        for text, _tid, value in e.top[:top_k]:
            tops.setdefault(text, value)
        out.top_logprobs.append(tops if top_k else None)
        out.text_offset.append(offset)
        offset += len(e.token)
    return out
