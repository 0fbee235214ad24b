"""The claim port on Redis: one Lua script call per workspace and batch.

Keys (``sluice.producer.keys``): ``sluice:{ws}:order:{order_id}`` holds the claiming message id;
``sluice:{ws}:opens:{user}`` is a sorted set of granted opens scored by event time (ms).
All keys of a call share the ``{ws}`` hash tag. redis-py's ``register_script`` sends
``EVALSHA`` and falls back to ``EVAL`` on ``NOSCRIPT``.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from sluice.producer import keys
from sluice.rules.claims import GRANTED, Claim, ClaimResult, OrderClaim

# ARGV: retention_s, then per claim: kind ("o" order, "e" email open), message_id,
# event_time_ms, window_ms. Returns, per claim, "" when granted or the holder's message id.
_CLAIM = """
local retention_s = tonumber(ARGV[1])
local results = {}
for i, key in ipairs(KEYS) do
    local base = 2 + (i - 1) * 4
    local kind, message_id = ARGV[base], ARGV[base + 1]
    if kind == 'o' then
        local holder = redis.call('GET', key)
        if not holder then
            redis.call('SET', key, message_id, 'EX', retention_s)
            holder = message_id
        end
        results[i] = (holder == message_id) and '' or holder
    else
        local at, window = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
        if redis.call('ZSCORE', key, message_id) then
            results[i] = ''
        else
            local near = redis.call('ZRANGEBYSCORE', key, '(' .. (at - window),
                                    '(' .. (at + window), 'LIMIT', 0, 1)
            if #near > 0 then
                results[i] = near[1]
            else
                redis.call('ZADD', key, at, message_id)
                redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (at - retention_s * 1000))
                redis.call('EXPIRE', key, retention_s)
                results[i] = ''
            end
        end
    end
end
return results
"""


# ARGV: per key, the message id that made the claim. An order claim is deleted only if that
# message still holds it (compare and delete); an open is that message's member of the set.
_RELEASE = """
for i, key in ipairs(KEYS) do
    local kind, message_id = ARGV[i * 2 - 1], ARGV[i * 2]
    if kind == 'o' then
        if redis.call('GET', key) == message_id then
            redis.call('DEL', key)
        end
    else
        redis.call('ZREM', key, message_id)
    end
end
return #KEYS
"""


class RedisClaimStore:
    """Claims kept ``retention_s`` (Redis is the fast path; the database keeps order claims
    for good). An email open arriving later than the retention is judged without the
    opens that expired."""

    def __init__(self, client: redis.Redis, *, retention_s: int) -> None:
        self._script = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._retention_s = retention_s

    def claim(self, claims: Sequence[Claim]) -> list[ClaimResult]:
        results: list[ClaimResult] = [GRANTED] * len(claims)
        by_workspace: dict[str, list[int]] = {}
        for index, claim in enumerate(claims):
            by_workspace.setdefault(claim.workspace_id, []).append(index)
        for indexes in by_workspace.values():
            names: list[str] = []
            args: list[str | int] = [self._retention_s]
            for index in indexes:
                claim = claims[index]
                if isinstance(claim, OrderClaim):
                    names.append(keys.order_claim(claim.workspace_id, claim.order_id))
                    args += ["o", claim.message_id, 0, 0]
                else:
                    names.append(keys.email_opens(claim.workspace_id, claim.user_key))
                    args += ["e", claim.message_id, claim.event_time_ms, claim.window_ms]
            replies = self._script(keys=names, args=args)
            for index, reply in zip(indexes, replies, strict=True):
                holder = reply.decode() if isinstance(reply, bytes) else str(reply)
                results[index] = GRANTED if not holder else ClaimResult(False, holder)
        return results

    def release(self, claims: Sequence[Claim]) -> None:
        by_workspace: dict[str, list[Claim]] = {}
        for claim in claims:
            by_workspace.setdefault(claim.workspace_id, []).append(claim)
        for some in by_workspace.values():  # one script call per hash tag
            names: list[str] = []
            args: list[str] = []
            for claim in some:
                if isinstance(claim, OrderClaim):
                    names.append(keys.order_claim(claim.workspace_id, claim.order_id))
                    args += ["o", claim.message_id]
                else:
                    names.append(keys.email_opens(claim.workspace_id, claim.user_key))
                    args += ["e", claim.message_id]
            self._release(keys=names, args=args)
