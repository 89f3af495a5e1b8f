"""What the tenancy stages learn about one request, kept in its typed slot `TENANT`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slipstream.gateway.context import StateKey
from slipstream.store.records import KeyRecord, OrgRecord, TeamRecord
from slipstream.tenancy.admission import Reservation, Scope

CHARS_PER_TOKEN = 4
TAGS_HEADER = "x-slipstream-tags"
END_USER_HEADER = "x-slipstream-end-user"
MAX_TAGS = 16


@dataclass(slots=True)
class TenantRequest:
    key: KeyRecord | None = None  # None: master key or auth off
    team: TeamRecord | None = None
    org: OrgRecord | None = None
    records_version: int = 0  # the key cache snapshot the records came from
    end_user: str | None = None
    tags: tuple[str, ...] = ()
    prompt_estimate: int = 0  # tokens, from the body size
    max_tokens: int | None = None
    limit_scopes: Sequence[Scope] = ()
    limit_tokens: int = 0  # what the limiter took for tokens/min on entry
    reservation: Reservation | None = None
    cost_micro: int | None = None  # set by the spend stage's post
    counted_chars: int = 0  # streamed completion text seen (usage fallback)


TENANT: StateKey[TenantRequest] = StateKey("tenant")  # set by auth, read by limits and spend


def estimate_prompt_tokens(body: dict[str, Any], raw: bytes | None) -> int:
    """chars/4 of the request, cheap and never zero; the real count arrives with usage."""
    if raw is not None:
        return max(1, len(raw) // CHARS_PER_TOKEN)
    size = 0
    for m in body.get("messages") or ():
        c = m.get("content") if isinstance(m, dict) else None
        size += len(c) if isinstance(c, str) else len(str(c or ""))
    p = body.get("prompt") or body.get("input")
    size += len(p) if isinstance(p, str) else len(str(p or ""))
    return max(1, size // CHARS_PER_TOKEN)


def requested_max_tokens(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        v = body.get(name)
        if isinstance(v, int) and v > 0:
            return v
    return None


def request_tags(
    headers: dict[str, str], body: dict[str, Any], key_tags: tuple[str, ...]
) -> tuple[str, ...]:
    h = headers.get(TAGS_HEADER)
    meta = body.get("metadata")
    if not key_tags and not h and not isinstance(meta, dict):  # the usual request
        return ()
    tags = list(key_tags)
    if h:
        tags += [t.strip() for t in h.split(",")]
    if isinstance(meta, dict) and isinstance(meta.get("tags"), list):
        tags += [str(t) for t in meta["tags"]]
    seen: dict[str, None] = {}
    for t in tags:
        if t and len(t) <= 200:
            seen.setdefault(t, None)
    return tuple(seen)[:MAX_TAGS]


def end_user_of(headers: dict[str, str], body: dict[str, Any]) -> str | None:
    u = headers.get(END_USER_HEADER) or body.get("user")
    return u[:200] if isinstance(u, str) and u else None
