"""The embedded engine as a provider (`provider: local`).

The one place where OpenAI-shaped requests become engine requests, reached through the
engine's socket client only. One module per concept:

- `provider`: `LocalEngineProvider`, admission and complete / stream
- `plan`: body → engine requests (`LocalPlan`); `sampling`: context checks, `SamplingParams`
- `runs`: `n` choices merged or collected; `answers`: responses and stream chunks
- `logprobs`, `usage`, `errors`: the OpenAI shapes of each
"""

from slipstream.providers.local.provider import DEFAULT_MAX_QUEUE, LocalEngineProvider

__all__ = ["DEFAULT_MAX_QUEUE", "LocalEngineProvider"]
