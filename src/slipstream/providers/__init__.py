"""Provider adapters: one module per upstream family, all speaking OpenAI-shaped requests.

`registry.build_provider(deployment_config)` builds the adapter for a deployment. Stream
conventions every adapter follows (on top of `base.py`):

- a chunk carries `raw` (the upstream's exact `data:` payload: write `data: <raw>\\n\\n`) or
  `data` (an OpenAI chunk dict to serialise);
- a chunk with neither carries only `usage`, for metering, because the client did not ask
  for usage (`stream_options.include_usage`): do not write it;
- adapters never yield `[DONE]`: the server ends the stream.
"""
