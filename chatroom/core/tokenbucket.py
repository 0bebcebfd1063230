# -*- test-case-name: tests.test_tokenbucket -*-
"""Token buckets with the time passed in, for flood and rate limits."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)


class TokenBucket:
    """Up to C{capacity} tokens, refilled at C{rate} tokens per second.

    The bucket starts full.  Times are whatever clock the caller uses, in
    seconds; the bucket never reads a clock itself.
    """

    # One per connection (flood control): slots keep it small.
    __slots__ = ("capacity", "rate", "_tokens", "_updated")

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self._tokens = float(capacity)
        self._updated: float | None = None

    def _refill(self, now: float) -> None:
        if self._updated is not None and now > self._updated:
            self._tokens = min(
                self.capacity, self._tokens + (now - self._updated) * self.rate
            )
        if self._updated is None or now > self._updated:
            self._updated = now

    def take(self, now: float) -> bool:
        """Take one token if there is one; say whether there was."""
        self._refill(now)
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def wait(self, now: float) -> float:
        """Seconds from C{now} until a token will be there (0 if one is)."""
        self._refill(now)
        if self._tokens >= 1:
            return 0.0
        if self.rate <= 0:
            return float("inf")
        return (1 - self._tokens) / self.rate

    def is_full(self, now: float) -> bool:
        """Whether the bucket has refilled completely."""
        self._refill(now)
        return self._tokens >= self.capacity


class KeyedRateLimit(Generic[K]):
    """One L{TokenBucket} per key (a source address, a host key) plus one
    for all keys together.

    Each key may spend C{per_key} tokens a second, in bursts of up to that
    many; all keys together C{total} a second.  A token is spent only when
    both the key's bucket and the total have one, so a refused request
    costs nothing.  At most C{max_keys} buckets are kept; the least recently
    used is forgotten first (a forgotten key starts again with a full
    bucket, which is the most a flood of fresh keys gets anyway).
    """

    def __init__(self, per_key: float, total: float, max_keys: int = 1024) -> None:
        if max_keys < 1:
            raise ValueError("A keyed rate limit must keep at least one bucket.")
        self.per_key = per_key
        self.total = total
        self.max_keys = max_keys
        self._buckets: OrderedDict[K, TokenBucket] = OrderedDict()
        self._total = TokenBucket(total, total)

    def allow(self, key: K, now: float) -> bool:
        """Spend one token for C{key} at C{now}; C{False} if none is left."""
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = TokenBucket(self.per_key, self.per_key)
        self._buckets[key] = bucket
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        if bucket.wait(now) > 0 or self._total.wait(now) > 0:
            return False
        bucket.take(now)
        self._total.take(now)
        return True

    def __len__(self) -> int:
        """The number of keys whose buckets are kept."""
        return len(self._buckets)
