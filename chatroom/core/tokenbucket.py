# -*- test-case-name: tests.test_tokenbucket -*-
"""A token bucket with the time passed in, for flood and rate limits."""

from __future__ import annotations


class TokenBucket:
    """Up to C{capacity} tokens, refilled at C{rate} tokens per second.

    The bucket starts full.  Times are whatever clock the caller uses, in
    seconds; the bucket never reads a clock itself.
    """

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self._tokens = float(capacity)
        self._updated: float | None = None

    def _refill(self, now: float) -> None:
        if self._updated is not None and now > self._updated:
            self._tokens = min(self.capacity,
                               self._tokens + (now - self._updated) * self.rate)
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
