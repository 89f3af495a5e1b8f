"""The one place the chain is built: the gateway's own stages plus every enabled feature's,
placed by phase (stage.py's `Phase`), then by the order the features were given.

No stage is found by name and nothing is spliced: a feature says where its stages belong and
the chain sorts them. The chain also keeps the hooks each stage defines, bound once, so a hook
a stage lacks costs nothing per request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slipstream.gateway.context import RequestContext
from slipstream.gateway.stage import ChunkResult, Feature, Stage
from slipstream.protocol.errors import Refusal
from slipstream.providers.base import StreamChunk

CORE = "gateway"
HOOKS = ("pre", "on_chunk", "flush", "post")

PreHook = Callable[[RequestContext], Awaitable[Refusal | None]]
ChunkHook = Callable[[RequestContext, StreamChunk], Awaitable[ChunkResult]]
FlushHook = Callable[[RequestContext], Awaitable[tuple[StreamChunk, ...]]]
PostHook = Callable[[RequestContext], Awaitable[None]]


@dataclass(frozen=True)
class Placed:
    stage: Stage
    feature: str  # who contributed it ("gateway" for the core's own)

    def hooks(self) -> list[str]:
        return [h for h in HOOKS if callable(getattr(self.stage, h, None))]


class Chain:
    """The ordered stages and their bound hooks: `pres` (index, name, hook) in order, `posts`
    reversed, and the stream hooks in order. A stage's `post` runs only if the `pre` of every
    stage before it completed (the index says where it sits)."""

    def __init__(self, placed: Sequence[Placed]) -> None:
        order = sorted(enumerate(placed), key=lambda item: (int(item[1].stage.phase), item[0]))
        self.placed: tuple[Placed, ...] = tuple(p for _, p in order)
        self.stages: tuple[Stage, ...] = tuple(p.stage for p in self.placed)
        self.pres: tuple[tuple[int, str, PreHook], ...] = self._bound("pre")
        self.on_chunk: tuple[ChunkHook, ...] = tuple(h for _, _, h in self._bound("on_chunk"))
        self.flushes: tuple[FlushHook, ...] = tuple(h for _, _, h in self._bound("flush"))
        self.posts: tuple[tuple[int, str, PostHook], ...] = self._bound("post")[::-1]

    @classmethod
    def build(cls, core: Sequence[Stage], features: Sequence[Feature] = ()) -> Chain:
        placed = [Placed(s, CORE) for s in core]
        for f in features:
            placed += [Placed(s, f.name) for s in f.stages()]
        return cls(placed)

    def _bound(self, hook: str) -> tuple[tuple[int, str, Any], ...]:
        out = []
        for i, s in enumerate(self.stages):
            fn = getattr(s, hook, None)
            if callable(fn):
                out.append((i, s.name, fn))
        return tuple(out)

    def describe(self) -> list[tuple[int, str, str, str, str]]:
        """Rows (position, phase, stage, feature, hooks) for `slipstream config check`."""
        return [
            (i + 1, p.stage.phase.name.lower(), p.stage.name, p.feature, ", ".join(p.hooks()))
            for i, p in enumerate(self.placed)
        ]
