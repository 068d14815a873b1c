"""Request rate limits: token buckets in Redis, shared by every API process.

Each authenticated request takes one token from its key's bucket and one from its tenant's bucket, in one
Lua script (atomic: two API processes never both spend the last token). A request without a valid key takes
one from its client address's bucket instead, so guessing keys is slowed as well. The buckets' sizes come
from the settings per role, and a tenant's settings may override them (`rate_limits`, see
docs/security.md). The script reads Redis's clock, so API hosts with skewed clocks still agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from framefleet.tenancy.permissions import ROLES

PREFIX = "framefleet:ratelimit:"


@dataclass(frozen=True)
class Bucket:
    """`burst` tokens at most, refilled at `per_second`; a request costs one token."""

    burst: int
    per_second: float

    @property
    def window_seconds(self) -> int:
        """How long an empty bucket takes to fill (the policy's window in RateLimit-Policy)."""
        return max(1, math.ceil(self.burst / self.per_second))


def parse_bucket(value: Any, *, field: str) -> Bucket:
    """A bucket from `{"burst": N, "per_second": R}`; ValueError naming `field` when malformed."""
    if not isinstance(value, Mapping) or set(value) != {"burst", "per_second"}:
        raise ValueError(f"{field} must be an object with exactly `burst` and `per_second`")
    burst, rate = value["burst"], value["per_second"]
    # Settings read from the environment arrive as floats: 200.0 is the integer 200.
    if isinstance(burst, float) and burst.is_integer():
        burst = int(burst)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ValueError(f"{field}.burst must be an integer of at least 1")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1e6:
        raise ValueError(f"{field}.per_second must be a number above 0")
    return Bucket(burst=burst, per_second=float(rate))


@dataclass(frozen=True)
class TenantLimits:
    """A tenant's own limits (from its settings' `rate_limits`); None: the installation's default."""

    tenant: Bucket | None = None
    roles: tuple[tuple[str, Bucket], ...] = ()

    def for_role(self, role: str) -> Bucket | None:
        return dict(self.roles).get(role)


def tenant_limits(settings: Mapping[str, Any] | None) -> TenantLimits:
    """The `rate_limits` of a tenant's settings: `{"tenant": B, "roles": {"member": B, …}}`, each optional.

    ValueError (naming the field) when malformed: tenant create/update refuse such settings.
    """
    raw = (settings or {}).get("rate_limits")
    if raw is None:
        return TenantLimits()
    if not isinstance(raw, Mapping) or not set(raw) <= {"tenant", "roles"}:
        raise ValueError("settings.rate_limits may hold `tenant` and `roles` only")
    tenant = parse_bucket(raw["tenant"], field="settings.rate_limits.tenant") if "tenant" in raw else None
    roles_raw = raw.get("roles", {})
    if not isinstance(roles_raw, Mapping) or not set(roles_raw) <= set(ROLES):
        raise ValueError(f"settings.rate_limits.roles maps roles ({', '.join(ROLES)}) to buckets")
    roles = tuple(
        (role, parse_bucket(roles_raw[role], field=f"settings.rate_limits.roles.{role}"))
        for role in ROLES
        if role in roles_raw
    )
    return TenantLimits(tenant=tenant, roles=roles)


@dataclass(frozen=True)
class Decision:
    """The outcome of one check, and the tightest bucket's state for the RateLimit-* headers."""

    allowed: bool
    scope: str  # which bucket is reported: "key", "tenant" or "client"
    bucket: Bucket
    remaining: float
    retry_after: float  # seconds until the request would fit (0 when allowed)

    def headers(self) -> dict[str, str]:
        """RateLimit-Limit/-Remaining/-Reset and RateLimit-Policy (IETF httpapi draft), plus Retry-After."""
        reset = math.ceil(max(0.0, self.bucket.burst - self.remaining) / self.bucket.per_second)
        headers = {
            "RateLimit-Limit": str(self.bucket.burst),
            "RateLimit-Remaining": str(max(0, math.floor(self.remaining))),
            "RateLimit-Reset": str(reset),
            "RateLimit-Policy": f"{self.bucket.burst};w={self.bucket.window_seconds}",
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return headers


# KEYS: the buckets; ARGV: burst and rate of each, in KEYS' order. Takes one token from every bucket when
# each holds at least one, else none. Returns {allowed, wait, tokens left per bucket} (floats as strings:
# Redis turns Lua numbers into integers).
_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local tokens = {}
local allowed = 1
local wait = 0
for i = 1, #KEYS do
  local burst = tonumber(ARGV[2 * i - 1])
  local rate = tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', KEYS[i], 't', 'at')
  local t = tonumber(state[1])
  local at = tonumber(state[2])
  if t == nil or at == nil then
    t = burst
    at = now
  end
  t = math.min(burst, t + math.max(0, now - at) * rate)
  tokens[i] = t
  if t < 1 then
    allowed = 0
    wait = math.max(wait, (1 - t) / rate)
  end
end
local result = {allowed, tostring(wait)}
for i = 1, #KEYS do
  local burst = tonumber(ARGV[2 * i - 1])
  local rate = tonumber(ARGV[2 * i])
  if allowed == 1 then
    tokens[i] = tokens[i] - 1
  end
  redis.call('HSET', KEYS[i], 't', tostring(tokens[i]), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate * 1000) + 1000)
  result[#result + 1] = tostring(tokens[i])
end
return result
"""


class RateLimiter:
    """Checks requests against their buckets in Redis (synchronous: the API calls it in a thread)."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_SCRIPT)

    def take(self, buckets: Sequence[tuple[str, str, Bucket]]) -> Decision:
        """Take one token from each of `buckets` ((scope, id, bucket)), or none when one is empty."""
        keys = [f"{PREFIX}{scope}:{ident}" for scope, ident, _ in buckets]
        args: list[float] = []
        for _, _, bucket in buckets:
            args += [bucket.burst, bucket.per_second]
        allowed, wait, *left = self._script(keys=keys, args=args)
        tokens = [float(value) for value in left]
        # Report the bucket closest to refusing: the one a client must pace itself by.
        tightest = min(range(len(buckets)), key=lambda i: tokens[i])
        scope, _, bucket = buckets[tightest]
        return Decision(
            allowed=bool(int(allowed)),
            scope=scope,
            bucket=bucket,
            remaining=tokens[tightest],
            retry_after=float(wait),
        )
