"""Auth: `Authorization: Bearer sk-...` or `x-api-key` → a virtual key from the in-memory cache.

Off when no master key is configured (the embedded zero-setup mode). The key material is
only hashed, compared and dropped: it never reaches a message, a log line or the context.
"""

from __future__ import annotations

import datetime as dt
import hmac
from typing import TYPE_CHECKING

from slipstream.gateway.context import RequestContext
from slipstream.gateway.stage import Phase
from slipstream.store.keygen import hash_key, looks_like_key
from slipstream.tenancy.refusals import forbidden, unauthorized
from slipstream.tenancy.request import (
    TENANT,
    TenantRequest,
    end_user_of,
    estimate_prompt_tokens,
    request_tags,
    requested_max_tokens,
)

if TYPE_CHECKING:
    from slipstream.tenancy.runtime import Tenancy

MISSING = (
    "You didn't provide an API key. Send it as 'Authorization: Bearer sk-...' "
    "(or in the 'x-api-key' header)."
)
MALFORMED = (
    "Incorrect API key format: Slipstream keys look like 'sk-ss-' followed by 43 characters."
)
UNKNOWN = "Incorrect API key provided: no such key (it may have been rotated)."


def presented_key(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else auth.strip()
    return headers.get("x-api-key") or None


class AuthStage:
    name = "auth"
    phase = Phase.AUTHENTICATE

    def __init__(self, tenancy: Tenancy) -> None:
        self.tenancy = tenancy
        self._master: tuple[str, bytes] = ("", b"")

    def _master_bytes(self, master: str) -> bytes:
        if self._master[0] is not master:
            self._master = (master, master.encode())
        return self._master[1]

    async def pre(self, ctx: RequestContext) -> None:
        t = TenantRequest(
            end_user=end_user_of(ctx.headers, ctx.body),
            prompt_estimate=estimate_prompt_tokens(ctx.body, ctx.raw),
            max_tokens=requested_max_tokens(ctx.body),
        )
        ctx.put(TENANT, t)
        master = self.tenancy.master_key
        if master is None:
            t.tags = request_tags(ctx.headers, ctx.body, ())
            return
        given = presented_key(ctx.headers)
        if not given:
            raise unauthorized(MISSING, "missing_api_key")
        if hmac.compare_digest(given.encode(), self._master_bytes(master)):
            t.tags = request_tags(ctx.headers, ctx.body, ())
            return
        if not looks_like_key(given):
            raise unauthorized(MALFORMED)
        snap = self.tenancy.cache.snapshot
        key = snap.keys.get(hash_key(given))
        del given
        if key is None:
            raise unauthorized(UNKNOWN)
        if key.revoked:
            raise unauthorized(f"The API key {key.id} has been revoked.", "revoked_api_key")
        if key.expires_at is not None and key.expires_at <= dt.datetime.now(dt.UTC):
            raise unauthorized(
                f"The API key {key.id} expired at {key.expires_at.isoformat()}.", "expired_api_key"
            )
        team = snap.teams.get(key.team_id) if key.team_id else None
        allowed = key.limits.models
        if allowed is None and team is not None:
            allowed = team.limits.models
        if allowed is not None and ctx.model not in allowed:
            raise forbidden(
                f"The API key {key.id} may not use model {ctx.model!r}; "
                f"allowed: {', '.join(allowed) or 'none'}."
            )
        t.key = key
        t.records_version = snap.version
        t.team = team
        t.org = snap.orgs.get(key.org_id) if key.org_id else None
        t.tags = request_tags(ctx.headers, ctx.body, key.tags)
