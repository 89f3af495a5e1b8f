"""Token-budget scheduler (vLLM V1 style): one budget per step, shared by prefill and decode.

Each step: running requests first (a decode costs 1 token, an unfinished prefill takes the
next chunk), then waiting requests in FCFS order with a prefix-cache lookup, each prompt
chunked to what is left of the budget. Prefill chunks and decodes share one `StepPlan`.

Memory pressure is handled by preemption-by-recompute: when a running request cannot get a
block, the most recently admitted running request drops all its blocks and goes back to the
front of the queue; on re-admission its prompt and generated tokens are recomputed (cheaply,
through the prefix cache) and generation continues where it stopped.

No deadlock: `add_request` rejects a prompt longer than the whole pool (or max_model_len),
and a request stops with "length" once it fills the pool, so any running request fits when
alone; the oldest running request always makes progress.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from slipstream.engine.config import SchedulerConfig
from slipstream.engine.kv.kv_cache_manager import KVCacheManager
from slipstream.engine.scheduler.stop_checker import check_stop
from slipstream.engine.types import (
    EngineStats,
    Request,
    RequestOutput,
    RequestStatus,
    SampledToken,
    ScheduledSeq,
    StepPlan,
)


class RequestTooLongError(ValueError):
    """The prompt can never be served: longer than max_model_len or the whole KV pool."""


class Scheduler:
    """Decides what runs each step and keeps requests' scheduling state."""

    def __init__(
        self, scheduler_config: SchedulerConfig, kv: KVCacheManager, max_model_len: int
    ) -> None:
        if scheduler_config.max_num_batched_tokens <= 0 or scheduler_config.max_num_seqs <= 0:
            raise ValueError("max_num_batched_tokens and max_num_seqs must be positive")
        self.config = scheduler_config
        self.kv = kv
        self.max_model_len = max_model_len
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []  # in admission order: the tail is preempted first
        self.requests: dict[str, Request] = {}
        self.num_preemptions = 0
        self._last_step_tokens = 0

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    def has_unfinished(self) -> bool:
        return bool(self.requests)

    def max_len(self, request: Request) -> int:
        """The most tokens (prompt + output) this request may reach."""
        return min(request.max_model_len, self.max_model_len, self.kv.capacity_tokens)

    def add_request(self, request: Request) -> None:
        """Queue a new request; raises `RequestTooLongError` if it could never be served."""
        if request.request_id in self.requests:
            raise ValueError(f"duplicate request id {request.request_id!r}")
        if request.num_prompt_tokens == 0:
            raise ValueError("empty prompt")
        limit = self.max_len(request)
        if request.num_tokens > limit:
            raise RequestTooLongError(
                f"request {request.request_id!r} has {request.num_tokens} tokens; the limit is "
                f"{limit} (max_model_len {min(request.max_model_len, self.max_model_len)}, "
                f"KV pool {self.kv.capacity_tokens})"
            )
        request.status = RequestStatus.WAITING
        self.requests[request.request_id] = request
        self.waiting.append(request)

    def _chunk(self, num_new: int, budget: int) -> int:
        """How many of `num_new` uncomputed tokens fit this step."""
        threshold = self.config.long_prefill_token_threshold
        if 0 < threshold < num_new:
            num_new = threshold
        return min(num_new, budget)

    def schedule(self) -> StepPlan:
        """Build the next step's plan within the token budget (may preempt)."""
        plan = StepPlan()
        budget = self.config.max_num_batched_tokens

        i = 0
        while i < len(self.running) and budget > 0:
            request = self.running[i]
            num_new = self._chunk(request.num_tokens - request.num_computed_tokens, budget)
            if num_new <= 0:
                i += 1
                continue
            while not self.kv.allocate_slots(request, num_new):
                victim = self.running.pop()  # later than i: not scheduled in this plan
                self._preempt(victim)
                plan.preempted_ids.append(victim.request_id)
                if victim is request:
                    break
            else:
                start = request.num_computed_tokens
                sample = start + num_new == request.num_tokens
                plan.seqs.append(ScheduledSeq(request, start, num_new, sample))
                budget -= num_new
                i += 1

        # After a preemption the pool is known to be full: admit nobody this step.
        while (
            not plan.preempted_ids
            and self.waiting
            and budget > 0
            and len(self.running) < self.config.max_num_seqs
        ):
            request = self.waiting[0]
            hits, num_cached = self.kv.get_computed_blocks(request)
            num_new = self._chunk(request.num_tokens - num_cached, budget)
            if not self.kv.allocate_slots(request, num_new, hits):
                break  # strict FCFS: later requests don't jump a head that doesn't fit
            self.waiting.popleft()
            request.num_computed_tokens = num_cached
            if request.num_cached_tokens < 0:
                request.num_cached_tokens = num_cached
            request.status = RequestStatus.RUNNING
            self.running.append(request)
            sample = num_cached + num_new == request.num_tokens
            plan.seqs.append(ScheduledSeq(request, num_cached, num_new, sample))
            budget -= num_new

        self._last_step_tokens = plan.num_tokens
        return plan

    def _preempt(self, request: Request) -> None:
        self.kv.free(request)
        request.num_computed_tokens = 0
        request.status = RequestStatus.PREEMPTED
        request.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(request)

    def update(self, plan: StepPlan, sampled: dict[str, SampledToken]) -> list[RequestOutput]:
        """Apply the runner's results: advance, cache, append tokens, stop, report deltas."""
        outputs: list[RequestOutput] = []
        any_finished = False
        for seq in plan.seqs:
            request = seq.request
            if request.status is not RequestStatus.RUNNING:
                continue  # finished or aborted after the plan was made
            request.num_computed_tokens = seq.start_pos + seq.num_tokens
            self.kv.cache_full_blocks(request)
            token = sampled.get(request.request_id) if seq.sample else None
            if token is None:
                continue
            request.output_token_ids.append(token.token_id)
            status = check_stop(request, self.max_len(request))
            if status is not None:
                self._finish(request, status)
                any_finished = True
            outputs.append(
                RequestOutput(
                    request_id=request.request_id,
                    new_token_ids=[token.token_id],
                    new_logprobs=None if token.logprob is None else [token.logprob],
                    finish_reason=None if status is None else status.value,
                    num_prompt_tokens=request.num_prompt_tokens,
                    num_cached_tokens=max(request.num_cached_tokens, 0),
                )
            )
        if any_finished:
            self.running = [r for r in self.running if r.status is RequestStatus.RUNNING]
        return outputs

    def _finish(self, request: Request, status: RequestStatus) -> None:
        request.status = status
        self.kv.free(request)
        del self.requests[request.request_id]

    def finish_requests(
        self, request_ids: Iterable[str], reason: RequestStatus | str
    ) -> list[Request]:
        """Finish requests from outside (stop string seen, client gone); frees blocks now.

        Unknown or already finished ids are ignored. Returns the requests finished here.
        """
        status = RequestStatus(reason)
        if not status.finished:
            raise ValueError(f"{reason!r} is not a finish reason")
        done: list[Request] = []
        for request_id in request_ids:
            request = self.requests.get(request_id)
            if request is None:
                continue
            if request.status is RequestStatus.RUNNING:
                self.running.remove(request)
            else:
                self.waiting.remove(request)
            self._finish(request, status)
            done.append(request)
        return done

    def abort_requests(self, request_ids: Iterable[str]) -> list[Request]:
        return self.finish_requests(request_ids, RequestStatus.FINISHED_ABORTED)

    def stats(self) -> EngineStats:
        return EngineStats(
            num_running=len(self.running),
            num_waiting=len(self.waiting),
            kv_cache_usage=self.kv.usage,
            num_blocks=self.kv.num_blocks,
            prefix_cache_queries=self.kv.prefix_cache_queries,
            prefix_cache_hits=self.kv.prefix_cache_hits,
            num_preemptions=self.num_preemptions,
            step_tokens=self._last_step_tokens,
        )
