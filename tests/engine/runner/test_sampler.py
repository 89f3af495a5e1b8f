"""Sampler behaviour on hand-made logits (no model needed)."""

from __future__ import annotations

import math

import pytest
import torch

from slipstream.engine.runner.sampler import Sampler, SampleRow
from slipstream.engine.types import SamplingParams


def row(params: SamplingParams, out: list[int] | None = None, seed: int | None = None) -> SampleRow:
    gen = None
    if seed is not None:
        gen = torch.Generator()
        gen.manual_seed(seed)
    return SampleRow(params=params, prompt_token_ids=[0], output_token_ids=out or [], generator=gen)


LOGITS = torch.tensor([[1.0, 3.0, 2.0, 0.5, -1.0]])


def test_greedy_takes_argmax_and_reports_logprobs() -> None:
    s = Sampler(torch.device("cpu"))
    [tok] = s.sample(LOGITS.clone(), [row(SamplingParams(temperature=0.0, logprobs=2))])
    assert tok.token_id == 1
    lp = torch.log_softmax(LOGITS[0], -1)
    assert tok.logprob is not None
    assert tok.logprob.logprob == pytest.approx(float(lp[1]))
    assert [t for t, _ in tok.logprob.top] == [1, 2]


def test_top_k_one_is_greedy_even_when_sampling() -> None:
    s = Sampler(torch.device("cpu"))
    for _ in range(20):
        [tok] = s.sample(LOGITS.clone(), [row(SamplingParams(temperature=1.5, top_k=1))])
        assert tok.token_id == 1


def test_top_p_tiny_keeps_only_the_top_token() -> None:
    s = Sampler(torch.device("cpu"))
    for _ in range(20):
        [tok] = s.sample(LOGITS.clone(), [row(SamplingParams(temperature=1.0, top_p=0.01))])
        assert tok.token_id == 1


def test_min_p_filters_unlikely_tokens() -> None:
    s = Sampler(torch.device("cpu"))
    seen = set()
    for _ in range(200):
        [tok] = s.sample(LOGITS.clone(), [row(SamplingParams(temperature=1.0, min_p=0.3))])
        seen.add(tok.token_id)
    # p(2)/p(1) = e^-1 ≈ 0.37 > 0.3 survives; p(0)/p(1) = e^-2 ≈ 0.14 does not.
    assert seen == {1, 2}


def test_sampling_follows_the_softmax_distribution() -> None:
    s = Sampler(torch.device("cpu"))
    n = 4000
    logits = LOGITS.repeat(n, 1)
    toks = s.sample(logits, [row(SamplingParams(temperature=1.0)) for _ in range(n)])
    counts = torch.bincount(torch.tensor([t.token_id for t in toks]), minlength=5).float() / n
    probs = torch.softmax(LOGITS[0], -1)
    for c, p in zip(counts.tolist(), probs.tolist(), strict=True):
        assert abs(c - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-3


def test_seeded_rows_repeat_whatever_the_batch() -> None:
    params = SamplingParams(temperature=1.0, seed=7)
    alone = [Sampler(torch.device("cpu")).sample(LOGITS.clone(), [row(params, seed=7)])[0].token_id]
    g = torch.Generator()
    g.manual_seed(7)
    seq_alone = []
    for _ in range(30):
        seq_alone.append(
            Sampler(torch.device("cpu"))
            .sample(LOGITS.clone(), [SampleRow(params, [0], [], g)])[0]
            .token_id
        )
    g2 = torch.Generator()
    g2.manual_seed(7)
    seq_batched = []
    other = SamplingParams(temperature=1.0)
    for _ in range(30):
        toks = Sampler(torch.device("cpu")).sample(
            LOGITS.repeat(3, 1), [row(other), SampleRow(params, [0], [], g2), row(other)]
        )
        seq_batched.append(toks[1].token_id)
    assert seq_alone == seq_batched
    assert alone[0] == seq_alone[0]
    assert len(set(seq_alone)) > 1  # it really samples


def test_repetition_penalty_discourages_seen_tokens() -> None:
    s = Sampler(torch.device("cpu"))
    logits = torch.tensor([[1.0, 3.0, 2.9, 0.5, -1.0]])
    [tok] = s.sample(
        logits.clone(), [row(SamplingParams(temperature=0.0, repetition_penalty=1.5), out=[1])]
    )
    assert tok.token_id == 2


def test_frequency_and_presence_penalties() -> None:
    s = Sampler(torch.device("cpu"))
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.5, -1.0]])
    [tok] = s.sample(
        logits.clone(), [row(SamplingParams(temperature=0.0, frequency_penalty=0.6), out=[1, 1])]
    )
    assert tok.token_id == 2  # 3.0 - 2*0.6 = 1.8 < 2.0
    [tok] = s.sample(
        logits.clone(), [row(SamplingParams(temperature=0.0, presence_penalty=1.5), out=[1, 1])]
    )
    assert tok.token_id == 2  # 3.0 - 1.5 = 1.5 < 2.0
    [tok] = s.sample(
        logits.clone(), [row(SamplingParams(temperature=0.0, presence_penalty=0.5), out=[1, 1])]
    )
    assert tok.token_id == 1
