"""The inference engine: paged KV cache, continuous batching, chunked prefill, prefix caching."""
