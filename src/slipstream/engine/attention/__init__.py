"""Attention over the paged KV cache: metadata built once per step, a backend per device."""
