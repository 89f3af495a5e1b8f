"""LLMEngine: scheduler + paged KV cache + model runner behind a synchronous step() API.

One `step()` is one forward pass over whatever the scheduler planned (prefill chunks and
decodes mixed). The engine process loop (process.py) calls it; tests call it directly.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import replace

from slipstream.engine.config import EngineConfig
from slipstream.engine.kv.kv_cache_manager import KVCacheManager
from slipstream.engine.loader import load_model, load_tokenizer
from slipstream.engine.runner.model_runner import ModelRunner
from slipstream.engine.scheduler.scheduler import Scheduler
from slipstream.engine.types import (
    EngineStats,
    ModelInfo,
    Request,
    RequestOutput,
    SamplingParams,
)

DEFAULT_MAX_MODEL_LEN_CAP = 8192


class LLMEngine:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        loaded = load_model(config.model)
        try:
            eos_from_tokenizer = load_tokenizer(config.model).eos_token_ids
        except (ValueError, OSError):
            # A model directory without a tokenizer still serves token-id prompts.
            eos_from_tokenizer = frozenset()
        spec = loaded.spec
        self.max_model_len = config.max_model_len or min(
            spec.max_position_embeddings, DEFAULT_MAX_MODEL_LEN_CAP
        )
        self.eos_token_ids = frozenset(eos_from_tokenizer) | frozenset(spec.eos_token_ids)
        self.vocab_size = spec.vocab_size
        self.runner = ModelRunner(loaded, config, self.max_model_len)
        del loaded
        self.kv = KVCacheManager(
            block_size=config.cache.block_size,
            num_blocks=self.runner.num_blocks,
            enable_prefix_caching=config.cache.enable_prefix_caching,
        )
        self.scheduler = Scheduler(config.scheduler, self.kv, self.max_model_len)
        self.model_info = ModelInfo(
            name=config.model,
            max_model_len=self.max_model_len,
            vocab_size=spec.vocab_size,
            eos_token_ids=self.eos_token_ids,
            dtype=str(self.runner.dtype).removeprefix("torch."),
            device=str(self.runner.device),
            num_kv_blocks=self.runner.num_blocks,
            block_size=config.cache.block_size,
        )
        self._requests: dict[str, Request] = {}
        # requests whose first delta (which carries their queue time) is still to come
        self._queue_unreported: set[str] = set()

    def add_request(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        sampling: SamplingParams,
        cache_salt: str | None = None,
    ) -> None:
        if request_id in self._requests:
            raise ValueError(f"request id {request_id!r} is already in use")
        n = len(prompt_token_ids)
        if n == 0:
            raise ValueError("the prompt is empty: send at least one token")
        if n >= self.max_model_len:
            raise ValueError(
                f"This model's maximum context length is {self.max_model_len} tokens, "
                f"but the prompt has {n} tokens. Shorten the prompt."
            )
        bad = [t for t in prompt_token_ids if not 0 <= t < self.vocab_size]
        if bad:
            raise ValueError(
                f"prompt token id {bad[0]} is outside the vocabulary (0..{self.vocab_size - 1})"
            )
        if sampling.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if n + sampling.max_tokens > self.max_model_len:
            raise ValueError(
                f"This model's maximum context length is {self.max_model_len} tokens. "
                f"However, you requested {n + sampling.max_tokens} tokens ({n} in the prompt, "
                f"{sampling.max_tokens} for the completion). Reduce the prompt or max_tokens."
            )
        req = Request(
            request_id=request_id,
            prompt_token_ids=list(prompt_token_ids),
            sampling=sampling,
            eos_token_ids=self.eos_token_ids,
            cache_salt=cache_salt,
            max_model_len=self.max_model_len,
        )
        self.scheduler.add_request(req)
        self._requests[request_id] = req
        self._queue_unreported.add(request_id)

    def abort_requests(self, request_ids: Iterable[str]) -> None:
        ids = [r for r in request_ids if r in self._requests]
        if not ids:
            return
        self.scheduler.abort_requests(ids)
        self.runner.release(ids)
        for rid in ids:
            self._requests.pop(rid, None)
            self._queue_unreported.discard(rid)

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    def step(self) -> list[RequestOutput]:
        plan = self.scheduler.schedule()
        if plan.empty:
            return []
        now = time.monotonic()
        for s in plan.seqs:
            if s.request.first_scheduled_time is None:
                s.request.first_scheduled_time = now
        sampled = self.runner.execute(plan)
        outputs = self.scheduler.update(plan, sampled)
        result: list[RequestOutput] = []
        finished: list[str] = []
        for out in outputs:
            req = self._requests.get(out.request_id)
            if out.request_id in self._queue_unreported and req is not None:
                self._queue_unreported.discard(out.request_id)
                if req.first_scheduled_time is not None:
                    out = replace(out, queue_time_s=req.first_scheduled_time - req.arrival_time)
            if out.finish_reason is not None:
                finished.append(out.request_id)
            result.append(out)
        if finished:
            self.runner.release(finished)
            for rid in finished:
                self._requests.pop(rid, None)
                self._queue_unreported.discard(rid)
        return result

    def stats(self) -> EngineStats:
        return self.scheduler.stats()

    def generate(
        self, prompts: list[list[int]], sampling: SamplingParams | list[SamplingParams]
    ) -> list[list[int]]:
        """Offline convenience: run prompts to completion and return their output token ids."""
        params = sampling if isinstance(sampling, list) else [sampling] * len(prompts)
        ids = [f"gen-{time.monotonic_ns()}-{i}" for i in range(len(prompts))]
        for rid, prompt, p in zip(ids, prompts, params, strict=True):
            self.add_request(rid, prompt, p)
        outputs: dict[str, list[int]] = {rid: [] for rid in ids}
        while self.has_unfinished():
            for out in self.step():
                if out.request_id in outputs:
                    outputs[out.request_id].extend(out.new_token_ids)
        return [outputs[rid] for rid in ids]
