"""Tests for decoding, verifying and budgeting in chatroom.core.receiver."""

from __future__ import annotations

import hashlib
from collections import Counter

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatroom.core.discovery import (
    KIND_ANSWER,
    KIND_QUERY,
    Announcement,
    Answer,
    Goodbye,
    Query,
)
from chatroom.core.receiver import Receiver, SignatureBudget

KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)


def announce(counter: int = 1, key=KEY, room: str = "lobby") -> Announcement:
    return Announcement.sign(
        key, room, ["192.0.2.10:6697"], counter=counter, lifetime=180
    )


def forged(i: int) -> bytes:
    """A well-formed announcement under a fresh made-up key, whose
    signature cannot be valid."""
    return Announcement(
        q=hashlib.sha256(i.to_bytes(8, "big")).digest(),
        room="spam",
        addresses=["192.0.2.66:6697"],
        counter=1,
        lifetime=180,
        flags=0,
        signature=bytes(64),
    ).to_bytes()


def flip_last_bit(data: bytes) -> bytes:
    """``data`` with the last bit of its signature flipped: never valid."""
    return data[:-1] + bytes([data[-1] ^ 1])


class Harness:
    def __init__(self, **kwargs) -> None:
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.receiver = Receiver(self.drops, self.stats, **kwargs)


class DecodeTests(SynchronousTestCase):
    """Bad input is counted by reason, never raised."""

    def test_reasons(self) -> None:
        h = Harness()
        good = Query(b"q" * 8).padded_to(100).to_bytes()
        for data in (b"", b"hello world", good[:10], good + bytes(1200)):
            self.assertIsNone(h.receiver.receive(data, "10.0.0.1", 0.0))
        self.assertEqual(
            h.drops, Counter({"truncated": 2, "bad-magic": 1, "oversized": 1})
        )
        self.assertEqual(
            h.receiver.receive(good, "10.0.0.1", 0.0), Query.from_bytes(good)
        )
        self.assertEqual(h.stats["received-query"], 1)

    def test_ignored_kinds_not_verified(self) -> None:
        """Kinds the owner does not accept are ignored before any check."""
        h = Harness(accept=(KIND_QUERY, KIND_ANSWER))
        self.assertIsNone(h.receiver.receive(announce().to_bytes(), "10.0.0.1", 0.0))
        self.assertEqual(h.stats, Counter({"ignored": 1}))
        self.assertEqual(h.drops, Counter())

    def test_forged_answer_inner_announcement(self) -> None:
        h = Harness()
        # With no extensions, an answer ends with its announcement's signature.
        bad = flip_last_bit(Answer(b"q" * 8, 10, announce()).to_bytes())
        self.assertIsNone(h.receiver.receive(bad, "10.0.0.1", 0.0))
        self.assertEqual(h.drops, Counter({"bad-signature": 1}))

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=400))
    def test_every_datagram_counted_once(self, data: bytes) -> None:
        """Whatever arrives is either returned or counted as one drop."""
        h = Harness()
        result = h.receiver.receive(b"CRDS\x01" + data, "10.0.0.1", 0.0)
        received = sum(v for k, v in h.stats.items() if k.startswith("received-"))
        self.assertEqual(received + sum(h.drops.values()), 1)
        self.assertEqual(result is not None, received == 1)


class VerifyOnceTests(SynchronousTestCase):
    """Signatures are checked only where they must be."""

    def test_repeats_not_verified_again(self) -> None:
        h = Harness()
        data = announce().to_bytes()
        for _ in range(5):
            self.assertIsNotNone(h.receiver.receive(data, "10.0.0.1", 0.0))
        self.assertEqual(h.stats["signatures-checked"], 1)
        self.assertEqual(h.stats["verified-before"], 4)

    def test_answer_carrying_verified_announcement(self) -> None:
        """An answer relaying an announcement verified before costs no check."""
        h = Harness()
        a = announce()
        h.receiver.receive(a.to_bytes(), "10.0.0.1", 0.0)
        h.receiver.receive(Answer(b"q" * 8, 10, a).to_bytes(), "10.0.0.2", 0.0)
        self.assertEqual(h.stats["signatures-checked"], 1)

    def test_owner_seam(self) -> None:
        """What the owner already holds (already_verified, asked for known
        keys) is not checked, even after the cache forgot it."""
        a = announce()
        h = Harness(known_key=lambda q: True, already_verified=lambda s: s == a)
        h.receiver.receive(a.to_bytes(), "10.0.0.1", 0.0)
        self.assertEqual(h.stats["signatures-checked"], 0)
        g = Goodbye.sign(KEY, "lobby", 2)
        h.receiver.receive(g.to_bytes(), "10.0.0.1", 0.0)
        self.assertEqual(h.stats["signatures-checked"], 1)

    def test_flood_refused_before_parsing(self) -> None:
        """Over the budget, a datagram under an unknown key is dropped on
        its envelope: even a malformed body is not reached."""
        h = Harness(budget=SignatureBudget(per_source=1, total=1))
        bad_body = announce().to_bytes()[:40] + b"\xff" * 30
        h.receiver.receive(forged(1), "10.0.0.1", 0.0)
        h.receiver.receive(bad_body, "10.0.0.2", 0.0)
        self.assertEqual(h.drops, Counter({"bad-signature": 1, "signature-budget": 1}))

    def test_cache_bounded(self) -> None:
        h = Harness(cache_size=2)
        datagrams = [announce(n).to_bytes() for n in range(1, 4)]
        for data in datagrams + datagrams[:1]:
            h.receiver.receive(data, "10.0.0.1", 0.0)
        self.assertEqual(h.stats["signatures-checked"], 4)


class BudgetTests(SynchronousTestCase):
    """A flood cannot spend unbounded CPU, nor crowd out known rooms."""

    def test_flood_from_one_source(self) -> None:
        """20 checks a second for one source; the rest dropped unchecked."""
        h = Harness()
        for n in range(1, 101):
            h.receiver.receive(flip_last_bit(announce(n).to_bytes()), "10.9.9.9", 0.0)
        self.assertEqual(h.stats["signatures-checked"], 20)
        self.assertEqual(
            h.drops, Counter({"bad-signature": 20, "signature-budget": 80})
        )
        self.assertIsNotNone(
            h.receiver.receive(announce(500).to_bytes(), "10.9.9.9", 1.0)
        )

    def test_flood_from_many_sources(self) -> None:
        """200 checks a second in all for unknown keys."""
        h = Harness()
        for i in range(1000):
            h.receiver.receive(forged(i), f"10.0.{i // 256}.{i % 256}", 0.0)
        self.assertEqual(h.stats["signatures-checked"], 200)
        self.assertEqual(h.drops["signature-budget"], 800)

    def test_known_key_has_its_own_share(self) -> None:
        """With the unknown share spent by a flood from many sources, a
        statement by a known key is still checked and accepted."""
        h = Harness(known_key=lambda q: q == announce().q)
        for i in range(1000):
            h.receiver.receive(forged(i), f"10.0.{i // 256}.{i % 256}", 0.0)
        renewal = announce(2)
        self.assertEqual(
            h.receiver.receive(renewal.to_bytes(), "10.0.0.1", 0.0), renewal
        )
        self.assertEqual(h.stats["signatures-checked"], 201)

    def test_known_keys_are_fair_to_each_other(self) -> None:
        """A flood claiming one known key spends that key's 5 a second,
        not the other known keys' share."""
        known = {announce().q, announce(key=OTHER_KEY).q}
        h = Harness(known_key=known.__contains__)
        for n in range(1, 101):
            h.receiver.receive(
                flip_last_bit(announce(n).to_bytes()), f"10.1.0.{n}", 0.0
            )
        self.assertEqual(h.stats["signatures-checked"], 5)
        other = announce(7, key=OTHER_KEY)
        self.assertEqual(h.receiver.receive(other.to_bytes(), "10.2.0.1", 0.0), other)

    def test_budget_shares(self) -> None:
        budget = SignatureBudget(per_source=1, total=2, per_known_key=1, known_total=1)
        self.assertTrue(budget.allow("a", b"k1", False, 0.0))
        self.assertFalse(budget.allow("a", b"k1", False, 0.0))
        self.assertTrue(budget.allow("b", b"k2", False, 0.0))
        self.assertFalse(budget.allow("c", b"k3", False, 0.0))
        self.assertTrue(budget.allow("c", b"k1", True, 0.0))
        self.assertFalse(budget.allow("d", b"k2", True, 0.0))
