"""Tests for the token buckets in chatroom.core.tokenbucket."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from chatroom.core.tokenbucket import KeyedRateLimit, TokenBucket


class TokenBucketTests(SynchronousTestCase):
    """One bucket: starts full, refills at its rate, never above capacity."""

    def test_burst_then_refill(self) -> None:
        bucket = TokenBucket(capacity=2, rate=1)
        self.assertEqual([bucket.take(0.0) for _ in range(3)], [True, True, False])
        self.assertAlmostEqual(bucket.wait(0.0), 1.0)
        self.assertFalse(bucket.take(0.5))
        self.assertTrue(bucket.take(1.0))
        self.assertFalse(bucket.is_full(1.0))
        self.assertTrue(bucket.is_full(100.0))
        self.assertEqual([bucket.take(100.0) for _ in range(3)], [True, True, False])

    def test_zero_rate_never_refills(self) -> None:
        bucket = TokenBucket(capacity=1, rate=0)
        self.assertTrue(bucket.take(0.0))
        self.assertEqual(bucket.wait(10.0), float("inf"))


class KeyedRateLimitTests(SynchronousTestCase):
    """Buckets per key plus a total."""

    def test_refill(self) -> None:
        """Tokens come back at the per-key rate."""
        limit: KeyedRateLimit[str] = KeyedRateLimit(per_key=2, total=1000)
        self.assertEqual([limit.allow("a", 0.0) for _ in range(3)], [True, True, False])
        self.assertFalse(limit.allow("a", 0.4))
        self.assertTrue(limit.allow("a", 0.6))

    def test_total(self) -> None:
        """Many keys together get at most the total."""
        limit: KeyedRateLimit[int] = KeyedRateLimit(per_key=10, total=5)
        allowed = [limit.allow(i, 0.0) for i in range(20)]
        self.assertEqual(allowed.count(True), 5)
        self.assertTrue(limit.allow(99, 0.2))

    def test_refused_costs_nothing(self) -> None:
        """A key refused by the total keeps its own tokens, and a key that
        is out of tokens does not spend the total."""
        limit: KeyedRateLimit[str] = KeyedRateLimit(per_key=1, total=1)
        self.assertTrue(limit.allow("a", 0.0))
        self.assertFalse(limit.allow("b", 0.0))  # total empty
        self.assertTrue(limit.allow("b", 1.0))  # b's own token was kept
        self.assertFalse(limit.allow("b", 1.5))  # b empty ...
        self.assertTrue(limit.allow("c", 2.0))  # ... and did not spend the total

    def test_bounded_keys(self) -> None:
        """At most max_keys buckets are kept, least recently used go."""
        limit: KeyedRateLimit[int] = KeyedRateLimit(per_key=1, total=1000, max_keys=3)
        for i in range(10):
            limit.allow(i, 0.0)
        self.assertEqual(len(limit), 3)
        self.assertFalse(limit.allow(9, 0.0))
        self.assertTrue(limit.allow(0, 0.0))  # forgotten, so full again
