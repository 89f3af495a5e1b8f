"""When a request is done generating: the token-level stop rules (stop *strings* live in the
front end's detokenizer, which then calls `Scheduler.finish_requests`)."""

from __future__ import annotations

from slipstream.engine.types import Request, RequestStatus


def check_stop(request: Request, max_len: int) -> RequestStatus | None:
    """The finish status after the request's newest output token, or None to keep going.

    EOS (unless `ignore_eos`) and `stop_token_ids` stop only once `min_tokens` outputs
    exist; the stopping token stays in the output (the detokenizer hides special tokens).
    `max_len` is the request's length cap: min(its max_model_len, what the KV pool holds).
    """
    sampling = request.sampling
    num_output = len(request.output_token_ids)
    if num_output >= sampling.min_tokens and num_output > 0:
        last = request.output_token_ids[-1]
        if last in sampling.stop_token_ids or (
            not sampling.ignore_eos and last in request.eos_token_ids
        ):
            return RequestStatus.FINISHED_STOPPED
    if num_output >= sampling.max_tokens:
        return RequestStatus.FINISHED_LENGTH
    if request.num_tokens >= max_len:
        return RequestStatus.FINISHED_LENGTH
    return None
