"""Engine output → OpenAI JSON: whole responses (`answer`) and stream chunks (`ChunkShaper`).

Built with the protocol's response models so local answers have exactly the OpenAI shape,
then dumped to the dicts the gateway carries.
"""

from __future__ import annotations

from typing import Any

from slipstream.engine.generation import GenerationDelta
from slipstream.protocol.openai import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatResponseMessage,
    CompletionChoice,
    CompletionResponse,
    DeltaMessage,
    Usage,
)
from slipstream.providers.local.logprobs import chat_logprobs, completion_logprobs
from slipstream.providers.local.plan import LocalPlan
from slipstream.providers.local.runs import Collected
from slipstream.providers.local.usage import TokenCounts, usage_for


def _per_prompt(plan: LocalPlan, finals: list[TokenCounts | None]) -> list[list[TokenCounts]]:
    n = plan.body.n
    return [
        [c for c in finals[p * n : (p + 1) * n] if c is not None] for p in range(plan.num_prompts)
    ]


def answer(plan: LocalPlan, model: str, results: list[Collected]) -> tuple[dict[str, Any], Usage]:
    """The whole response body and its usage."""
    usage = usage_for(_per_prompt(plan, list(results)))
    if plan.chat:
        chat = ChatCompletionResponse(
            id=plan.response_id,
            model=model,
            choices=[
                ChatChoice(
                    index=i,
                    message=ChatResponseMessage(content=r.text),
                    logprobs=chat_logprobs(r.logprobs, plan.top_k) if plan.want_logprobs else None,
                    finish_reason=r.finish_reason,
                )
                for i, r in enumerate(results)
            ],
            usage=usage,
        )
        return chat.model_dump(mode="json"), usage
    echo = plan.echo
    text = CompletionResponse(
        id=plan.response_id,
        model=model,
        choices=[
            CompletionChoice(
                index=i,
                text=echo[i] + r.text,
                logprobs=(
                    completion_logprobs(r.logprobs, plan.top_k, len(echo[i]))
                    if plan.want_logprobs
                    else None
                ),
                finish_reason=r.finish_reason,
            )
            for i, r in enumerate(results)
        ],
        usage=usage,
    )
    return text.model_dump(mode="json"), usage


class ChunkShaper:
    """Stream chunks of one request; remembers per-choice offsets and final counts."""

    def __init__(self, plan: LocalPlan, model: str) -> None:
        self.plan = plan
        self.model = model
        self.offsets = [0] * len(plan.requests)
        self.last: list[GenerationDelta | None] = [None] * len(plan.requests)

    def opening(self) -> list[dict[str, Any]]:
        """Chat streams first announce the assistant role of every choice."""
        if not self.plan.chat:
            return []
        return [
            self._chat([ChatChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))])
            for i in range(len(self.plan.requests))
        ]

    def delta(self, index: int, delta: GenerationDelta) -> dict[str, Any]:
        self.last[index] = delta
        plan = self.plan
        if plan.chat:
            logprobs = (
                chat_logprobs(delta.logprobs or [], plan.top_k) if plan.want_logprobs else None
            )
            choice = ChatChunkChoice(
                index=index,
                delta=DeltaMessage(content=delta.text),
                logprobs=logprobs,
                finish_reason=delta.finish_reason,
            )
            return self._chat([choice])
        prefix = plan.echo[index] if self.offsets[index] == 0 else ""
        text_logprobs = None
        if plan.want_logprobs:
            start = self.offsets[index] + len(prefix)
            text_logprobs = completion_logprobs(delta.logprobs or [], plan.top_k, start)
        text = prefix + delta.text
        self.offsets[index] += len(text)
        choice_t = CompletionChoice(
            index=index, text=text, logprobs=text_logprobs, finish_reason=delta.finish_reason
        )
        return self._text([choice_t])

    def usage(self) -> Usage:
        return usage_for(_per_prompt(self.plan, list(self.last)))

    def usage_chunk(self, usage: Usage) -> dict[str, Any]:
        return self._chat([], usage) if self.plan.chat else self._text([], usage)

    def _chat(self, choices: list[ChatChunkChoice], usage: Usage | None = None) -> dict[str, Any]:
        chunk = ChatCompletionChunk(
            id=self.plan.response_id, model=self.model, choices=choices, usage=usage
        )
        return chunk.model_dump(mode="json")

    def _text(self, choices: list[CompletionChoice], usage: Usage | None = None) -> dict[str, Any]:
        chunk = CompletionResponse(
            id=self.plan.response_id, model=self.model, choices=choices, usage=usage
        )
        return chunk.model_dump(mode="json")
