"""Workload generation, SSE parsing and the significance test, without a server."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

import orjson
import pytest

from slipstream.bench.compare import _mann_whitney_pure
from slipstream.bench.corpus import EstimateCounter
from slipstream.bench.lengths import LengthDist
from slipstream.bench.record import Exchange
from slipstream.bench.sse import parse_exchange
from slipstream.bench.workload import SharedPrefix, Workload, WorkloadConfig


@pytest.mark.parametrize(
    ("spec", "mean", "std"),
    [
        ("128", 128, 0),
        ("200,40", 200, 40),
        ("uniform:100,300", 200, 57.7),
        ("lognormal:150,90", 150, 90),
    ],
)
def test_length_distributions(spec: str, mean: float, std: float) -> None:
    dist = LengthDist.parse(spec)
    rng = random.Random(3)
    xs = [dist.sample(rng) for _ in range(20000)]
    assert abs(statistics.mean(xs) - mean) < 0.03 * mean + 0.5
    assert abs(statistics.pstdev(xs) - std) < 0.06 * std + 0.6
    assert min(xs) >= 1


def test_bad_length_specs() -> None:
    for bad in ("abc", "uniform:5", "poisson:3", "1,2,3", "-5"):
        with pytest.raises(ValueError):
            LengthDist.parse(bad)


def test_prompts_are_real_text_of_the_requested_length_and_deterministic() -> None:
    cfg = WorkloadConfig(model="m", input=LengthDist("fixed", 200), output=LengthDist("fixed", 64))
    a, b = Workload(cfg), Workload(cfg)
    counter = EstimateCounter()
    bodies = [orjson.loads(a.request(i).body) for i in range(20)]
    assert [a.request(i).body for i in range(5)] == [b.request(i).body for i in range(5)]
    for body in bodies:
        text = body["messages"][0]["content"]
        assert abs(counter.count(text) - 200) <= 2
        assert body["max_tokens"] == body["min_tokens"] == 64 and body["ignore_eos"] is True
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (
        len({b["messages"][0]["content"][:80] for b in bodies}) == 20
    )  # no accidental prefix reuse
    assert "the" in bodies[0]["messages"][0]["content"].lower()


def test_shared_prefix_fraction_and_count() -> None:
    cfg = WorkloadConfig(model="m", shared_prefix=SharedPrefix.parse("3:100:0.5"), seed=7)
    w = Workload(cfg)
    specs = [w.request(i) for i in range(1000)]
    shared = [s for s in specs if s.prefix_id is not None]
    assert 0.45 < len(shared) / 1000 < 0.55
    systems = {orjson.loads(s.body)["messages"][0]["content"] for s in shared}
    assert len(systems) == 3
    assert all(abs(EstimateCounter().count(t) - 100) <= 2 for t in systems)


def test_datasets_sharegpt_and_jsonl(tmp_path: Path) -> None:
    share = tmp_path / "sg.json"
    share.write_text(
        json.dumps(
            [
                {
                    "conversations": [
                        {"from": "human", "value": "Hi there"},
                        {"from": "gpt", "value": "one two three"},
                    ]
                },
                {"conversations": [{"from": "gpt", "value": "no human turn"}]},
            ]
        )
    )
    w = Workload(WorkloadConfig(model="m", dataset=str(share), output_from_dataset=True))
    body = orjson.loads(w.request(0).body)
    assert body["messages"] == [{"role": "user", "content": "Hi there"}] and body["max_tokens"] == 3
    jl = tmp_path / "p.jsonl"
    jl.write_text(
        '{"prompt": "a"}\n\n{"messages": [{"role": "user", "content": "b"}], "max_tokens": 7}\n'
    )
    w = Workload(WorkloadConfig(model="m", dataset=str(jl), output_from_dataset=True, seed=1))
    got = {orjson.loads(w.request(i).body)["messages"][0]["content"] for i in range(2)}
    assert got == {"a", "b"}
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        Workload(WorkloadConfig(model="m", dataset=str(tmp_path / "bad.jsonl")))


def test_sse_events_split_across_reads_and_token_assignment() -> None:
    ex = Exchange(0, 10.0)
    ex.status, ex.sent = 200, 10.0
    ev = lambda text: b'data: {"choices":[{"delta":{"content":"%s"}}]}\r\n\r\n' % text.encode()  # noqa: E731
    stream = (
        ev("")
        + ev("ab")
        + ev("abab")
        + b'data: {"choices":[],"usage":{"completion_tokens":4}}\n\ndata: [DONE]\n\n'
    )
    cut = len(ev("")) + 10  # the "ab" event completes only in the second read
    ex.pieces = [(10.1, stream[:cut]), (10.2, stream[cut : cut + 60]), (10.3, stream[cut + 60 :])]
    r = parse_exchange(ex, t0=10.0)
    kinds = [(round(e.t, 3), e.kind, e.tokens) for e in r.events]
    assert kinds[0] == (0.1, "empty", 0)
    assert kinds[1][1:] == ("content", 1) and kinds[1][0] == 0.2  # 4 tokens split 2:4 by text
    assert [k[1:] for k in kinds[2:]] == [("content", 3), ("usage", 0), ("done", 0)]
    assert r.output_tokens == 4 and r.token_source == "usage" and r.ok


def test_mann_whitney_pure_matches_reference_values() -> None:
    # scipy.stats.mannwhitneyu([1,2,3,4,5],[6,7,8,9,10]) → U=0, p=0.01219 (normal approx, cc)
    u, p = _mann_whitney_pure([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert u == 0 and p == pytest.approx(0.01219, abs=2e-4)
    u, p = _mann_whitney_pure([1, 2, 3], [1, 2, 3])
    assert p == pytest.approx(1.0)
