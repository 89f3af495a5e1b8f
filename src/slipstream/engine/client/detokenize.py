"""Token deltas → text deltas, on the front end.

The engine only knows token ids; detokenization and stop strings live here so that text
work stays out of the engine loop and its step time stays flat. Text that might be the
start of a stop string (or half a UTF-8 character) is held back until it is known not to
be one; on a match the text is cut and the request finishes with "stop".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from slipstream.engine.generation import GenerationDelta, GenerationRequest, LogprobEntry
from slipstream.engine.stop_strings import StopTextMatcher
from slipstream.engine.types import RequestOutput


class TextTokenizer(Protocol):
    eos_token_ids: Any

    def id_to_piece(self, token_id: int) -> str: ...
    def new_detokenizer(self) -> Any: ...


def logprob_entry(lp: Any, token_text: Callable[[int], str]) -> LogprobEntry:
    """An engine logprob with the text of its token and of its top alternatives."""
    return LogprobEntry(
        token=token_text(lp.token_id),
        token_id=lp.token_id,
        logprob=lp.logprob,
        top=tuple((token_text(tid), tid, value) for tid, value in lp.top),
    )


@dataclass(eq=False)
class TextDeltas:
    """The text side of one request: detokenizer, stop matcher, counts, tokens not yet sent."""

    request: GenerationRequest
    detokenizer: Any
    matcher: StopTextMatcher
    num_prompt_tokens: int = 0
    num_cached_tokens: int = 0
    num_completion_tokens: int = 0
    pending_ids: list[int] = field(default_factory=list)
    pending_logprobs: list[LogprobEntry] = field(default_factory=list)

    def push(
        self, output: RequestOutput, token_text: Callable[[int], str]
    ) -> tuple[str, str | None, bool]:
        """Takes one engine delta: (text safe to emit, finish reason, a stop string matched)."""
        if output.num_prompt_tokens:
            self.num_prompt_tokens = output.num_prompt_tokens
        self.num_cached_tokens = max(self.num_cached_tokens, output.num_cached_tokens)
        new_ids = list(output.new_token_ids)
        self.num_completion_tokens += len(new_ids)
        self.pending_ids.extend(new_ids)
        if output.new_logprobs:
            self.pending_logprobs.extend(
                logprob_entry(lp, token_text) for lp in output.new_logprobs
            )
        new_text = self.detokenizer.push(new_ids) if new_ids else ""
        if output.finish_reason is not None:
            new_text += self.detokenizer.flush()  # a truncated character at the very end
        text, stopped = self.matcher.feed(new_text)
        finish = output.finish_reason
        if stopped:
            finish = "stop"
        elif finish is not None:
            text += self.matcher.flush()
        return text, finish, stopped

    def take(self, text: str, finish: str | None) -> GenerationDelta:
        """The delta to send: `text` with every token and logprob pending since the last one."""
        wants_logprobs = self.request.sampling.logprobs is not None
        delta = GenerationDelta(
            text=text,
            token_ids=self.pending_ids,
            logprobs=self.pending_logprobs if wants_logprobs else None,
            finish_reason=finish,
            num_prompt_tokens=self.num_prompt_tokens,
            num_cached_tokens=self.num_cached_tokens,
            num_completion_tokens=self.num_completion_tokens,
        )
        self.pending_ids = []
        self.pending_logprobs = []
        return delta
