"""Fixtures for provider contract tests: fake upstreams started once per test module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.providers.upstream_server import FakeUpstream


@pytest.fixture(scope="module")
def upstream_factory() -> Iterator[Callable[[Any], FakeUpstream]]:
    started: list[FakeUpstream] = []

    def make(app: Any) -> FakeUpstream:
        fake = FakeUpstream(app).__enter__()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.__exit__()
