"""Token usage of a local engine answer: prompt tokens counted once per prompt, completions summed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from slipstream.protocol.openai import PromptTokensDetails, Usage


class TokenCounts(Protocol):
    num_prompt_tokens: int
    num_cached_tokens: int
    num_completion_tokens: int


def usage_for(per_prompt: Sequence[Sequence[TokenCounts]]) -> Usage:
    """`per_prompt[p]` holds the final counts of every choice generated for prompt p."""
    prompt = cached = completion = 0
    for choices in per_prompt:
        if not choices:
            continue
        prompt += choices[0].num_prompt_tokens
        cached += max(c.num_cached_tokens for c in choices)
        completion += sum(c.num_completion_tokens for c in choices)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
    )
