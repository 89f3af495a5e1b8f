"""Retries, fallback chains, Retry-After, timeouts and error faithfulness (non-streaming)."""

from __future__ import annotations

import time

import pytest

from slipstream.gateway import GatewayError
from slipstream.providers.base import ErrorKind

from .fakes import FakeClock, Fleet, Step, chat, dep, err, make_gateway, run

FAST_RETRIES = {"max": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.5}


def two_models(**chat_extra):
    return [
        {"name": "chat", "deployments": [dep("a")], "fallbacks": ["big"],
         "retries": FAST_RETRIES, **chat_extra},
        {"name": "big", "deployments": [dep("b")]},
    ]  # fmt: skip


@pytest.mark.parametrize(
    "failure",
    [
        err(ErrorKind.SERVER, 500),
        err(ErrorKind.RATE_LIMITED, 429),
        err(ErrorKind.TIMEOUT, 504),
        err(ErrorKind.CONNECTION, 502, msg="connection refused"),
        err(ErrorKind.AUTH, 401),
    ],
    ids=lambda e: e.kind.value,
)
def test_falls_back_to_the_next_model(failure):
    fleet = Fleet(a=[Step(error=failure)] * 10)
    clock = FakeClock()
    gw = make_gateway(two_models(), fleet, clock)
    result = run(lambda: gw.handle("chat/completions", chat(), None, {}))
    assert result.model == "big" and result.deployment == "b"
    assert result.response.body["choices"][0]["message"]["content"] == "from b"
    # retryable kinds are retried on "a" first; auth is not (it rules the deployment out)
    expected_a_calls = 1 if failure.kind is ErrorKind.AUTH else 3
    assert fleet.counts() == {"a": expected_a_calls, "b": 1}
    assert fleet["b"].calls[0].body["model"] == "up-b"


def test_retry_succeeds_within_the_model_with_backoff():
    fleet = Fleet(a=[Step(error=err(ErrorKind.SERVER, 503))])
    clock = FakeClock()
    gw = make_gateway(two_models(), fleet, clock)
    result = run(lambda: gw.handle("chat/completions", chat(), None, {}))
    assert result.model == "chat" and fleet.counts() == {"a": 2, "b": 0}
    assert len(clock.sleeps) == 1 and 0 <= clock.sleeps[0] <= 0.01  # full jitter in [0, base]


def test_retry_moves_to_another_deployment_before_retrying_the_same():
    models = [{"name": "chat", "deployments": [dep("a"), dep("b")], "retries": FAST_RETRIES}]
    fleet = Fleet(
        a=[Step(error=err(ErrorKind.SERVER, 500))], b=[Step(error=err(ErrorKind.SERVER, 500))]
    )
    clock = FakeClock()
    gw = make_gateway(models, fleet, clock)
    result = run(lambda: gw.handle("chat/completions", chat(), None, {}))
    assert sum(fleet.counts().values()) == 3 and result.model == "chat"
    assert len(clock.sleeps) == 1  # the switch to the other deployment was immediate


def test_retry_after_is_honoured_with_an_injected_clock():
    fleet = Fleet(a=[Step(error=err(ErrorKind.RATE_LIMITED, 429, retry_after=0.4))])
    clock = FakeClock()
    gw = make_gateway(two_models(), fleet, clock)
    result = run(lambda: gw.handle("chat/completions", chat(), None, {}))
    assert result.model == "chat" and fleet.counts()["a"] == 2
    assert clock.sleeps == [pytest.approx(0.4)]


def test_retry_after_is_honoured_in_real_time():
    fleet = Fleet(a=[Step(error=err(ErrorKind.RATE_LIMITED, 429, retry_after=0.25))])
    gw = make_gateway(two_models(), fleet)
    t0 = time.perf_counter()
    result = run(lambda: gw.handle("chat/completions", chat(), None, {}))
    elapsed = time.perf_counter() - t0
    assert result.model == "chat"
    assert 0.25 <= elapsed < 0.25 + 0.75  # generous: the machine is shared


def test_retry_after_longer_than_backoff_cap_falls_back_at_once():
    fleet = Fleet(a=[Step(error=err(ErrorKind.RATE_LIMITED, 429, retry_after=30))])
    clock = FakeClock()
    gw = make_gateway(two_models(), fleet, clock)
    result = run(lambda: gw.handle("chat/completions", chat(), None, {}))
    assert result.model == "big" and fleet.counts() == {"a": 1, "b": 1} and clock.sleeps == []
    # the cooldown persists: the next request skips "a" without calling it
    run(lambda: gw.handle("chat/completions", chat(), None, {}))
    assert fleet.counts() == {"a": 1, "b": 2}


def test_bad_request_is_never_retried_nor_fallen_back():
    fleet = Fleet(a=[Step(error=err(ErrorKind.BAD_REQUEST, 400, msg="bad 'temperature'"))])
    gw = make_gateway(two_models(), fleet, FakeClock())
    with pytest.raises(GatewayError) as info:
        run(lambda: gw.handle("chat/completions", chat(), None, {}))
    assert info.value.status == 400 and fleet.counts() == {"a": 1, "b": 0}
    assert info.value.body()["error"]["type"] == "invalid_request_error"
    assert "temperature" in info.value.body()["error"]["message"]


def test_exhausted_chain_raises_the_last_error_faithfully():
    fleet = Fleet(
        a=[Step(error=err(ErrorKind.SERVER, 500))] * 3,
        b=[Step(error=err(ErrorKind.RATE_LIMITED, 429, retry_after=0.1))] * 3,
    )
    gw = make_gateway(two_models(), fleet, FakeClock())
    with pytest.raises(GatewayError) as info:
        run(lambda: gw.handle("chat/completions", chat(), None, {}))
    e = info.value
    assert e.status == 429 and e.kind is ErrorKind.RATE_LIMITED
    assert e.headers()["retry-after"] == "0" and e.headers()["x-request-id"]
    assert e.body()["error"]["code"] == "rate_limit_exceeded"
    assert fleet.counts() == {"a": 3, "b": 3}


def test_context_window_error_goes_to_larger_context_models_only():
    models = [
        {"name": "chat", "deployments": [dep("a")], "fallbacks": ["same-size"],
         "context_window_fallbacks": ["long"]},
        {"name": "same-size", "deployments": [dep("s")]},
        {"name": "long", "deployments": [dep("l", context_window=128000)]},
    ]  # fmt: skip
    fleet = Fleet(a=[Step(error=err(ErrorKind.CONTEXT_WINDOW, 400, msg="too long"))])
    gw = make_gateway(models, fleet, FakeClock())
    result = run(lambda: gw.handle("chat/completions", chat(), None, {}))
    assert result.model == "long" and fleet.counts() == {"a": 1, "s": 0, "l": 1}


def test_context_window_without_fallbacks_is_final():
    models = [{"name": "chat", "deployments": [dep("a"), dep("b")]}]
    fleet = Fleet(
        a=[Step(error=err(ErrorKind.CONTEXT_WINDOW, 400))],
        b=[Step(error=err(ErrorKind.CONTEXT_WINDOW, 400))],
    )
    gw = make_gateway(models, fleet, FakeClock())
    with pytest.raises(GatewayError) as info:
        run(lambda: gw.handle("chat/completions", chat(), None, {}))
    assert info.value.status == 400
    assert info.value.body()["error"]["code"] == "context_length_exceeded"
    assert sum(fleet.counts().values()) == 1


def test_first_token_timeout_is_enforced_then_falls_back():
    slow = {"timeouts": {"first_token": 0.05}}
    models = [
        {"name": "chat", "deployments": [dep("a", **slow)], "fallbacks": ["big"],
         "retries": {"max": 0}},
        {"name": "big", "deployments": [dep("b")]},
    ]  # fmt: skip
    fleet = Fleet(a=[Step(delay=5.0)])
    gw = make_gateway(models, fleet)
    t0 = time.perf_counter()
    result = run(lambda: gw.handle("chat/completions", chat(), None, {}))
    assert result.model == "big" and time.perf_counter() - t0 < 1.0
    errors = gw.metrics.registry.get_sample_value(
        "slipstream:gateway_errors_total", {"model": "chat", "deployment": "a", "kind": "timeout"}
    )
    assert errors == 1


def test_unknown_model_and_missing_model_are_client_errors():
    gw = make_gateway(two_models(), Fleet())
    with pytest.raises(GatewayError) as info:
        run(lambda: gw.handle("chat/completions", chat("nope"), None, {}))
    assert info.value.status == 404 and "nope" in info.value.message
    with pytest.raises(GatewayError) as info:
        run(lambda: gw.handle("chat/completions", {"messages": []}, None, {}))
    assert info.value.status == 400


def test_adapter_raising_a_foreign_exception_is_contained():
    class Broken(Exception):
        pass

    fleet = Fleet(a=[Step(error=Broken("secret-ish details"))] * 3)  # type: ignore[arg-type]
    gw = make_gateway(two_models(), fleet, FakeClock())
    result = run(lambda: gw.handle("chat/completions", chat(), None, {}))
    assert result.model == "big"
