"""The stage contract: pre/post hooks around the one provider call (Bifrost's plugin shape).

`pre` runs in list order before the call and may raise `ProviderError` to answer early (auth,
limits...); `post` runs in reverse order after the call, also on failure (`ctx.error` set),
and for a stream after its last chunk. Only stages whose `pre` completed get a `post`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from slipstream.gateway.context import RequestContext

F = TypeVar("F", bound=Callable[..., Any])


class Stage(Protocol):
    name: str

    async def pre(self, ctx: RequestContext) -> None: ...

    async def post(self, ctx: RequestContext) -> None: ...


def passthrough(hook: F) -> F:
    """Mark a `pre` or `post` that does nothing: the gateway then does not call it (an awaited
    no-op with its timing costs ~0.5 µs per stage and request)."""
    hook.passthrough = True  # type: ignore[attr-defined]
    return hook


def does_work(hook: Callable[..., Any]) -> bool:
    return not getattr(hook, "passthrough", False)
