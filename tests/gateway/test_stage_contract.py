"""The stage contract: optional hooks, refusals (returned or raised), response headers, typed
per-stage state, and what on_chunk may do to a stream (pass, change, hold back, end)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from slipstream.config import parse_config
from slipstream.gateway import EndStream, Gateway, GatewayError, Phase, Refusal
from slipstream.gateway.chain import Chain
from slipstream.gateway.context import RequestContext, StateKey
from slipstream.gateway.metrics import GatewayMetrics
from slipstream.gateway.stages import core_stages
from slipstream.providers.base import StreamChunk

from .fakes import Fleet, Step, chat, dep, run

NOTE: StateKey[list[str]] = StateKey("note")


class Feature:
    name = "test"

    def __init__(self, *stages: Any) -> None:
        self._stages = list(stages)

    def stages(self) -> list[Any]:
        return self._stages


def gateway(*stages: Any, fleet: Fleet | None = None) -> tuple[Gateway, Fleet]:
    fleet = fleet or Fleet()
    config = parse_config({"models": [{"name": "chat", "deployments": [dep("a")]}]})
    gw = Gateway(config, fleet.factory, rng=random.Random(1), features=[Feature(*stages)])
    return gw, fleet


def text(chunk: StreamChunk) -> str | None:
    if chunk.data and chunk.data.get("choices"):
        return chunk.data["choices"][0]["delta"].get("content")
    return None


async def collect(gw: Gateway) -> tuple[Any, list[StreamChunk]]:
    stream = await gw.handle_stream("chat/completions", chat(stream=True), None, {})
    return stream, [c async for c in stream]


class OnlyPost:
    name = "only_post"
    phase = Phase.BILL

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def post(self, ctx: RequestContext) -> None:
        self.seen.append(ctx.status)


def test_a_hook_a_stage_does_not_define_is_not_in_the_chain():
    stage = OnlyPost()
    chain = Chain.build(core_stages(GatewayMetrics()), [Feature(stage)])
    assert [name for _, name, _ in chain.posts] == ["only_post", "meter"]
    assert "only_post" not in [name for _, name, _ in chain.pres]
    assert chain.on_chunk == () and chain.flushes == ()
    gw, _ = gateway(stage)
    run(lambda: gw.handle("chat/completions", chat(), None, {}))
    assert stage.seen == [200]


def test_chain_is_ordered_by_phase_whatever_order_features_come_in():
    class S:
        def __init__(self, name: str, phase: Phase) -> None:
            self.name, self.phase = name, phase

        async def pre(self, ctx: RequestContext) -> None:
            return None

    late, early = S("late", Phase.BILL), S("early", Phase.AUTHENTICATE)
    chain = Chain.build(core_stages(GatewayMetrics()), [Feature(late), Feature(early)])
    assert [s.name for s in chain.stages] == ["request_id", "meter", "early", "route", "late"]
    rows = chain.describe()
    assert rows[2] == (3, "authenticate", "early", "test", "pre")
    assert rows[1] == (2, "observe", "meter", "gateway", "post")


@pytest.mark.parametrize("how", ["return", "raise"])
def test_a_refusal_returned_or_raised_answers_early_with_its_own_body(how: str):
    class Gate:
        name = "gate"
        phase = Phase.ADMIT

        async def pre(self, ctx: RequestContext) -> Refusal | None:
            ctx.response_headers["x-gate"] = "closed"
            r = Refusal(403, "gate_closed", "the gate is closed", param="model")
            if how == "raise":
                raise r
            return r

    before = OnlyPost()
    before.phase = Phase.AUTHENTICATE
    gw, fleet = gateway(before, Gate())
    with pytest.raises(GatewayError) as info:
        run(lambda: gw.handle("chat/completions", chat(), None, {}))
    e = info.value
    assert e.status == 403 and e.kind is None
    assert e.body() == {
        "error": {
            "message": "the gate is closed",
            "type": "permission_error",
            "param": "model",
            "code": "gate_closed",
        }
    }
    assert e.headers()["x-gate"] == "closed"  # what stages wrote reaches the error reply
    assert fleet.counts() == {"a": 0} and before.seen == [403]


def test_response_headers_and_typed_state_reach_the_answer_and_the_post():
    seen: list[Any] = []

    class Writer:
        name = "writer"
        phase = Phase.ADMIT

        async def pre(self, ctx: RequestContext) -> None:
            ctx.response_headers["x-writer"] = "1"
            ctx.put(NOTE, ["admitted"])

        async def post(self, ctx: RequestContext) -> None:
            seen.append(ctx.get(NOTE))

    gw, _ = gateway(Writer())
    result = run(lambda: gw.handle("chat/completions", chat(), None, {}))
    assert result.headers()["x-writer"] == "1" and seen == [["admitted"]]
    stream, _ = run(lambda: collect(gw))
    assert stream.headers()["x-writer"] == "1" and seen[-1] == ["admitted"]


def test_on_chunk_can_change_and_hold_back_chunks_and_flush_releases_them():
    class Upper:
        name = "upper"
        phase = Phase.TRANSFORM

        async def on_chunk(self, ctx: RequestContext, chunk: StreamChunk) -> StreamChunk:
            t = text(chunk)
            if t is None:
                return chunk
            return StreamChunk(data={"choices": [{"index": 0, "delta": {"content": t.upper()}}]})

    class HoldFirstTwo:
        """Holds two chunks back, releases them with the third, and holds the rest to the end."""

        name = "hold"
        phase = Phase.BILL

        def __init__(self) -> None:
            self.held: list[StreamChunk] = []

        async def on_chunk(self, ctx: RequestContext, chunk: StreamChunk) -> Any:
            self.held.append(chunk)
            if len(self.held) == 3:
                out, self.held = tuple(self.held), []
                return out
            return None

        async def flush(self, ctx: RequestContext) -> tuple[StreamChunk, ...]:
            out, self.held = tuple(self.held), []
            return out

    gw, _ = gateway(HoldFirstTwo(), Upper(), fleet=Fleet(a=[Step(chunks=4)]))
    stream, chunks = run(lambda: collect(gw))
    # Upper runs first (transform < bill), so the hold stage sees upper-cased text; the last
    # two (A:3 and the usage-only chunk, passed by Upper as it was) come out of flush
    assert [text(c) for c in chunks] == ["A:0", "A:1", "A:2", "A:3", None]
    assert chunks[-1].usage is not None
    assert stream.ctx.usage is not None  # usage is read before the hooks see a chunk


def test_end_stream_stops_cleanly_and_a_refusal_ends_with_an_sdk_readable_error():
    class StopAfter:
        name = "stop"
        phase = Phase.TRANSFORM

        async def on_chunk(self, ctx: RequestContext, chunk: StreamChunk) -> StreamChunk:
            if text(chunk) == "a:1":
                raise EndStream(chunk)
            return chunk

    gw, _ = gateway(StopAfter(), fleet=Fleet(a=[Step(chunks=5)]))
    _, chunks = run(lambda: collect(gw))
    assert [text(c) for c in chunks] == ["a:0", "a:1"]
    assert gw.state.groups["chat"].deployments[0].outstanding == 0  # upstream released
    ok = gw.metrics.registry.get_sample_value(
        "slipstream:gateway_requests_total", {"model": "chat", "status": "200"}
    )
    assert ok == 1

    class Block:
        name = "block"
        phase = Phase.TRANSFORM

        async def on_chunk(self, ctx: RequestContext, chunk: StreamChunk) -> StreamChunk:
            if text(chunk) == "a:1":
                raise Refusal(400, "content_blocked", "the answer was blocked by policy")
            return chunk

    gw, _ = gateway(Block(), fleet=Fleet(a=[Step(chunks=5)]))
    _, chunks = run(lambda: collect(gw))
    assert text(chunks[0]) == "a:0" and len(chunks) == 2
    assert chunks[-1].data == {
        "error": {
            "message": "the answer was blocked by policy",
            "type": "invalid_request_error",
            "param": None,
            "code": "content_blocked",
        }
    }
    reg = gw.metrics.registry
    assert (
        reg.get_sample_value(
            "slipstream:gateway_requests_total", {"model": "chat", "status": "400"}
        )
        == 1
    )
    # a stage's refusal is not the upstream's fault: no error counted against the deployment
    assert (
        reg.get_sample_value(
            "slipstream:gateway_errors_total",
            {"model": "chat", "deployment": "a", "kind": "mid_stream"},
        )
        is None
    )
