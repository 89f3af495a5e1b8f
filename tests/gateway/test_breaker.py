"""The circuit breaker: opens on consecutive failures or error rate, probes, closes."""

from __future__ import annotations

import asyncio
import contextlib

from slipstream.config import CircuitBreakerConfig
from slipstream.gateway.breaker import BreakerState, CircuitBreaker
from slipstream.providers.base import ErrorKind

from .fakes import FakeClock, Fleet, Step, chat, dep, err, make_gateway, run


def breaker(clock: FakeClock, **kw) -> CircuitBreaker:
    return CircuitBreaker(CircuitBreakerConfig(**kw), clock.now)


def test_opens_on_consecutive_failures_and_half_opens_after_cooldown():
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=3, cooldown_s=10, half_open_probes=2)
    for _ in range(2):
        assert b.acquire()
        b.record_failure()
    assert b.state is BreakerState.CLOSED
    b.record_success()  # a success resets the run
    for _ in range(3):
        b.record_failure()
    assert b.state is BreakerState.OPEN and not b.available()
    clock.advance(9.9)
    assert not b.available()
    clock.advance(0.2)
    assert b.state is BreakerState.HALF_OPEN
    assert b.acquire() and b.acquire() and not b.acquire()  # two probes at most
    b.record_failure()  # a failed probe reopens
    assert b.state is BreakerState.OPEN
    clock.advance(10)
    assert b.acquire()
    b.record_success()
    assert b.state is BreakerState.CLOSED and b.available()


def test_opens_on_error_rate_over_the_window():
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=100, error_rate=0.5, window_s=10, min_requests=10)
    for i in range(9):  # alternate: never two failures in a row, 5/9 failed but too few samples
        (b.record_failure if i % 2 == 0 else b.record_success)()
        clock.advance(0.1)
    assert b.state is BreakerState.CLOSED
    b.record_success()
    assert b.state is BreakerState.CLOSED  # successes never open a breaker
    b.record_failure()  # 6/11 ≥ 0.5
    assert b.state is BreakerState.OPEN


def test_old_samples_leave_the_window():
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=100, error_rate=0.6, window_s=5, min_requests=4)
    for _ in range(3):
        b.record_failure()  # 3/3 failed, but too few samples to judge
    clock.advance(6)  # all of that is forgotten
    for outcome in (b.record_success, b.record_failure, b.record_success, b.record_failure):
        outcome()
    # 2/4 in the window stays closed; had the old samples stayed it would be 5/7 ≥ 0.6
    assert b.state is BreakerState.CLOSED


def test_gateway_breaker_opens_skips_probes_and_closes():
    cb = {"consecutive_failures": 2, "cooldown_s": 30, "half_open_probes": 1}
    models = [
        {"name": "chat", "deployments": [dep("a")], "fallbacks": ["backup"],
         "retries": {"max": 0}, "circuit_breaker": cb},
        {"name": "backup", "deployments": [dep("b")]},
    ]  # fmt: skip
    fleet = Fleet()
    clock = FakeClock()
    gw = make_gateway(models, fleet, clock)
    fleet["a"].default = Step(error=err(ErrorKind.SERVER, 500))
    registry = gw.metrics.registry

    def state() -> float | None:
        return registry.get_sample_value(
            "slipstream:gateway_breaker_state", {"model": "chat", "deployment": "a"}
        )

    def ask() -> str:
        return run(lambda: gw.handle("chat/completions", chat(), None, {})).deployment

    assert state() == 0
    assert [ask(), ask()] == ["b", "b"] and fleet.counts()["a"] == 2
    assert state() == 2  # open
    assert [ask() for _ in range(5)] == ["b"] * 5
    assert fleet.counts()["a"] == 2  # open: "a" is not called at all
    clock.advance(31)
    fleet["a"].default = Step()  # "a" recovered
    assert ask() == "a"  # the half-open probe goes through and succeeds
    assert state() == 0
    assert [ask() for _ in range(3)] == ["a"] * 3


def test_rate_limits_and_client_errors_do_not_trip_the_breaker():
    models = [{"name": "chat", "deployments": [dep("a")], "retries": {"max": 0},
               "circuit_breaker": {"consecutive_failures": 2}}]  # fmt: skip
    fleet = Fleet()
    gw = make_gateway(models, fleet, FakeClock())
    fleet["a"].script = [Step(error=err(ErrorKind.RATE_LIMITED, 429))] * 3 + [
        Step(error=err(ErrorKind.BAD_REQUEST, 400))
    ] * 3
    for _ in range(6):
        with contextlib.suppress(Exception):
            run(lambda: gw.handle("chat/completions", chat(), None, {}))
    assert gw.state.groups["chat"].deployments[0].breaker.state is BreakerState.CLOSED


def test_half_open_lets_only_the_probe_through():
    cb = {"consecutive_failures": 1, "cooldown_s": 10, "half_open_probes": 1}
    models = [
        {"name": "chat", "deployments": [dep("a")], "fallbacks": ["backup"],
         "retries": {"max": 0}, "circuit_breaker": cb},
        {"name": "backup", "deployments": [dep("b")]},
    ]  # fmt: skip
    fleet = Fleet()
    clock = FakeClock()
    gw = make_gateway(models, fleet, clock)
    fleet["a"].script = [Step(error=err(ErrorKind.CONNECTION, 502))]

    async def go():
        assert (await gw.handle("chat/completions", chat(), None, {})).deployment == "b"  # opens
        clock.advance(11)
        gate = asyncio.Event()
        fleet["a"].script = [Step(gate=gate)]
        probe = asyncio.create_task(gw.handle("chat/completions", chat(), None, {}))
        await asyncio.sleep(0.01)
        others = [
            (await gw.handle("chat/completions", chat(), None, {})).deployment for _ in range(3)
        ]
        gate.set()
        return (await probe).deployment, others

    probe, others = run(go)
    assert probe == "a" and others == ["b", "b", "b"]
    assert gw.state.groups["chat"].deployments[0].breaker.state is BreakerState.CLOSED
