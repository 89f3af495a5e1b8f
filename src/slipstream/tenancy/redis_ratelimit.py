"""The same limits shared by every replica through Redis: one Lua script checks and takes.

Buckets are hashes {level, stamp} refilled from Redis' own clock (no replica clock skew) and
expire after two idle windows. Concurrency is a sorted set of request ids scored by start
time, so slots held by a replica that died are reclaimed after `PARALLEL_TTL_S`.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from slipstream.tenancy.ratelimit import Decision, MemoryLimiter, Scope, rate_headers
from slipstream.tenancy.redis_guard import RedisGuard

PARALLEL_TTL_S = 900
PREFIX = "slipstream:rl:"

# KEYS: per scope 3 keys (rpm bucket, tpm bucket, parallel zset).
# ARGV: tokens, request_id, then per scope rpm, tpm, max_parallel (-1 = unlimited).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local tokens = tonumber(ARGV[1])
local rid = ARGV[2]
local n = #KEYS / 3
local levels = {}
local function level(key, cap)
  local v = redis.call('HMGET', key, 'level', 'stamp')
  local l = tonumber(v[1]); local s = tonumber(v[2])
  if l == nil then return cap end
  return math.min(cap, l + (now - s) * cap / 60)
end
for i = 0, n - 1 do
  local rpm = tonumber(ARGV[3 + i * 3]); local tpm = tonumber(ARGV[4 + i * 3])
  local par = tonumber(ARGV[5 + i * 3])
  local rl, tl = -1, -1
  if rpm >= 0 then
    rl = level(KEYS[1 + i * 3], rpm)
    if rl < 1 then return {0, i, 1, tostring((1 - rl) * 60 / rpm), tostring(rl), '0'} end
  end
  if tpm >= 0 then
    tl = level(KEYS[2 + i * 3], tpm)
    local need = math.min(tokens, tpm)
    if tl < need then return {0, i, 2, tostring((need - tl) * 60 / tpm), tostring(rl), tostring(tl)} end
  end
  if par >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[3 + i * 3], '-inf', now - __TTL__)
    if redis.call('ZCARD', KEYS[3 + i * 3]) >= par then return {0, i, 3, '1', tostring(rl), tostring(tl)} end
  end
  levels[i] = {rl, tl}
end
for i = 0, n - 1 do
  local rpm = tonumber(ARGV[3 + i * 3]); local tpm = tonumber(ARGV[4 + i * 3])
  local par = tonumber(ARGV[5 + i * 3])
  if rpm >= 0 then
    redis.call('HSET', KEYS[1 + i * 3], 'level', levels[i][1] - 1, 'stamp', now)
    redis.call('EXPIRE', KEYS[1 + i * 3], 120)
  end
  if tpm >= 0 then
    redis.call('HSET', KEYS[2 + i * 3], 'level', levels[i][2] - tokens, 'stamp', now)
    redis.call('EXPIRE', KEYS[2 + i * 3], 120)
  end
  if par >= 0 then
    redis.call('ZADD', KEYS[3 + i * 3], now, rid)
    redis.call('EXPIRE', KEYS[3 + i * 3], __TTL__)
  end
end
return {1, 0, 0, '0', tostring(levels[0][1] - 1), tostring(levels[0][2] - tokens)}
""".replace("__TTL__", str(PARALLEL_TTL_S))

# KEYS: per scope (tpm bucket, parallel zset). ARGV: delta tokens (refund > 0), rid, per scope tpm.
_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local delta = tonumber(ARGV[1])
for i = 0, #KEYS / 2 - 1 do
  local tpm = tonumber(ARGV[3 + i])
  if tpm >= 0 and delta ~= 0 then
    local k = KEYS[1 + i * 2]
    local v = redis.call('HMGET', k, 'level', 'stamp')
    local l = tonumber(v[1]); local s = tonumber(v[2])
    if l == nil then l = tpm; s = now end
    l = math.min(tpm, math.min(tpm, l + (now - s) * tpm / 60) + delta)
    redis.call('HSET', k, 'level', l, 'stamp', now)
    redis.call('EXPIRE', k, 120)
  end
  redis.call('ZREM', KEYS[2 + i * 2], ARGV[2])
end
return 1
"""

_WHAT = {1: "requests per minute", 2: "tokens per minute", 3: "concurrent requests"}


def _arg(v: int | None) -> int:
    return -1 if v is None else v


class RedisLimiter:
    def __init__(self, client: aioredis.Redis, guard: RedisGuard | None = None) -> None:
        self._redis = client
        self.guard = guard or RedisGuard()
        self.fallback = MemoryLimiter()  # while Redis is unreachable
        self._acquire = client.register_script(_ACQUIRE)
        self._settle = client.register_script(_SETTLE)

    async def acquire(self, scopes: Sequence[Scope], tokens: int, request_id: str) -> Decision:
        if not scopes:
            return Decision(True)
        if not self.guard.usable():
            return await self.fallback.acquire(scopes, tokens, request_id)
        try:
            return await self._acquire_shared(scopes, tokens, request_id)
        except (RedisError, OSError) as e:
            self.guard.failed("rate limiting", e)
            return await self.fallback.acquire(scopes, tokens, request_id)

    async def _acquire_shared(
        self, scopes: Sequence[Scope], tokens: int, request_id: str
    ) -> Decision:
        keys: list[str] = []
        args: list[int | str] = [tokens, request_id]
        for s in scopes:
            keys += [f"{PREFIX}{s.name}:r", f"{PREFIX}{s.name}:t", f"{PREFIX}{s.name}:p"]
            args += [_arg(s.rpm), _arg(s.tpm), _arg(s.max_parallel)]
        ok, idx, why, wait, rl, tl = await self._acquire(keys=keys, args=args)
        scope = scopes[int(idx)]
        r_left, t_left = float(rl), float(tl)
        headers = rate_headers(
            scope,
            r_left,
            t_left,
            (scope.rpm - r_left) * 60 / scope.rpm if scope.rpm else 0,
            (scope.tpm - t_left) * 60 / scope.tpm if scope.tpm else 0,
        )
        if int(ok):
            return Decision(True, headers=headers)
        reason = f"{_WHAT[int(why)]} limit of {scope.name}"
        return Decision(False, max(float(wait), 0.001), reason, headers)

    async def settle(
        self, scopes: Sequence[Scope], estimated: int, actual: int, request_id: str
    ) -> None:
        if not scopes:
            return
        keys: list[str] = []
        args: list[int | str] = [estimated - actual, request_id]
        for s in scopes:
            keys += [f"{PREFIX}{s.name}:t", f"{PREFIX}{s.name}:p"]
            args.append(_arg(s.tpm))
        await self.fallback.settle(scopes, estimated, actual, request_id)  # no-op if unused
        if not self.guard.usable():
            return
        try:
            await self._settle(keys=keys, args=args)
        except (RedisError, OSError) as e:
            self.guard.failed("rate limit settle", e)
