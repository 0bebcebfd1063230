"""Tests for the room directory in chatroom.core.directory."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatroom.core.directory import Outcome, RoomDirectory
from chatroom.core.discovery import Announcement, Answer, Goodbye

KEY_A = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
KEY_B = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)


def announce(
    counter: int,
    room: str = "lobby",
    key: Ed25519PrivateKey = KEY_A,
    port: int = 6697,
    lifetime: int = 180,
) -> Announcement:
    """A signed announcement for tests."""
    return Announcement.sign(
        key, room, [f"192.0.2.1:{port}"], counter=counter, lifetime=lifetime
    )


def outcomes(changes: list) -> list[Outcome]:
    """The outcomes of a list of directory changes."""
    return [change.outcome for change in changes]


class NewestCounterTests(SynchronousTestCase):
    """The directory keeps the newest valid T per (Q, R)."""

    def setUp(self) -> None:
        self.directory = RoomDirectory()

    def test_add_and_lookup(self) -> None:
        """A new room is added and found by (Q, R) and by name."""
        a = announce(1)
        self.assertEqual(
            outcomes(self.directory.offer_announcement(a, 10.0)), [Outcome.ADDED]
        )
        entry = self.directory.lookup(a.q, "lobby", 11.0)
        assert entry is not None
        self.assertEqual(entry.announcement, a)
        self.assertEqual(entry.first_heard, 10.0)
        self.assertEqual(entry.expires_at, 190.0)
        self.assertEqual(entry.remaining(100.0), 90.0)
        self.assertEqual(self.directory.find(11.0, room="lobby"), [entry])
        self.assertEqual(self.directory.find(11.0, room="other"), [])

    def test_newer_counter_replaces(self) -> None:
        """A higher T for the same room replaces the entry (the host moved)."""
        self.directory.offer_announcement(announce(1, port=1000), 0.0)
        changes = self.directory.offer_announcement(announce(5, port=2000), 3.0)
        self.assertEqual(outcomes(changes), [Outcome.UPDATED])
        entry = self.directory.lookup(announce(1).q, "lobby", 4.0)
        assert entry is not None
        self.assertEqual(entry.announcement.addresses[0].port, 2000)
        self.assertEqual((entry.first_heard, entry.last_heard), (0.0, 3.0))

    def test_older_counter_dropped(self) -> None:
        """A replay of an older T changes nothing and is counted."""
        self.directory.offer_announcement(announce(5, port=2000), 0.0)
        before = self.directory.entries(1.0)
        self.assertEqual(
            self.directory.offer_announcement(announce(4, port=1), 1.0), []
        )
        self.assertEqual(self.directory.entries(1.0), before)
        self.assertEqual(self.directory.drops["older-counter"], 1)

    def test_same_counter_same_bytes_refreshes(self) -> None:
        """Hearing the same announcement again extends its life."""
        a = announce(1, lifetime=10)
        self.directory.offer_announcement(a, 0.0)
        changes = self.directory.offer_announcement(a, 8.0)
        self.assertEqual(outcomes(changes), [Outcome.REFRESHED])
        self.assertIsNotNone(self.directory.lookup(a.q, a.room, 15.0))
        self.assertIsNone(self.directory.lookup(a.q, a.room, 18.0))

    def test_same_counter_different_content_dropped(self) -> None:
        """Equal T with different content keeps the first and is counted."""
        first = announce(3, port=1000)
        self.directory.offer_announcement(first, 0.0)
        self.assertEqual(
            self.directory.offer_announcement(announce(3, port=2000), 1.0), []
        )
        entry = self.directory.lookup(first.q, "lobby", 1.0)
        assert entry is not None
        self.assertEqual(entry.announcement, first)
        self.assertEqual(entry.last_heard, 0.0)
        self.assertEqual(self.directory.drops["conflicting-content"], 1)

    def test_rooms_are_per_key(self) -> None:
        """Two hosts with the same room name are two rooms."""
        self.directory.offer_announcement(announce(1, key=KEY_A), 0.0)
        self.directory.offer_announcement(announce(1, key=KEY_B), 0.0)
        self.assertEqual(len(self.directory.find(0.0, room="lobby")), 2)
        prefix = hashlib.sha256(announce(1, key=KEY_B).q).digest()[:8]
        found = self.directory.find(0.0, room="lobby", fingerprint_prefix=prefix)
        self.assertEqual([e.announcement.q for e in found], [announce(1, key=KEY_B).q])


class ExpiryTests(SynchronousTestCase):
    """Entries expire after their lifetime; answers cannot extend it."""

    def test_expiry(self) -> None:
        """An entry is gone after its lifetime and expire() reports it."""
        directory = RoomDirectory()
        a = announce(1, lifetime=30)
        directory.offer_announcement(a, 100.0)
        self.assertEqual(directory.expire(129.9), [])
        self.assertEqual(outcomes(directory.expire(130.0)), [Outcome.EXPIRED])
        self.assertIsNone(directory.lookup(a.q, a.room, 130.0))
        self.assertEqual(len(directory), 0)

    def test_lookup_hides_expired_before_expire(self) -> None:
        """Lookups never return an expired entry, even before expire()."""
        directory = RoomDirectory()
        a = announce(1, lifetime=30)
        directory.offer_announcement(a, 0.0)
        self.assertIsNone(directory.lookup(a.q, a.room, 31.0))
        self.assertEqual(directory.entries(31.0), [])

    def test_answer_lifetime_capped(self) -> None:
        """An answer's remaining lifetime shortens the entry's life; a large
        one cannot extend it past the announcement's lifetime."""
        directory = RoomDirectory()
        a = announce(1, lifetime=60)
        directory.offer_answer(Answer(bytes(8), 5, a), 0.0)
        self.assertIsNone(directory.lookup(a.q, a.room, 6.0))
        directory.offer_answer(Answer(bytes(8), 86400, a), 10.0)
        entry = directory.lookup(a.q, a.room, 10.0)
        assert entry is not None
        self.assertEqual(entry.expires_at, 70.0)

    def test_zero_remaining_dropped(self) -> None:
        """An answer saying zero seconds remain adds nothing."""
        directory = RoomDirectory()
        directory.offer_answer(Answer(bytes(8), 0, announce(1)), 0.0)
        self.assertEqual(len(directory), 0)
        self.assertEqual(directory.drops["zero-lifetime"], 1)


class GoodbyeTests(SynchronousTestCase):
    """Signed goodbyes remove rooms and keep older announcements out."""

    def test_goodbye_removes(self) -> None:
        """A goodbye with a higher T removes the room."""
        directory = RoomDirectory()
        a = announce(1)
        directory.offer_announcement(a, 0.0)
        changes = directory.offer_goodbye(Goodbye.sign(KEY_A, "lobby", 2), 1.0)
        self.assertEqual(outcomes(changes), [Outcome.REMOVED])
        self.assertIsNone(directory.lookup(a.q, "lobby", 1.0))

    def test_goodbye_equal_counter_removes(self) -> None:
        """A goodbye with the same T as the announcement removes it."""
        directory = RoomDirectory()
        directory.offer_announcement(announce(4), 0.0)
        changes = directory.offer_goodbye(Goodbye.sign(KEY_A, "lobby", 4), 1.0)
        self.assertEqual(outcomes(changes), [Outcome.REMOVED])

    def test_older_goodbye_dropped(self) -> None:
        """A goodbye older than the announcement is dropped and counted."""
        directory = RoomDirectory()
        a = announce(5)
        directory.offer_announcement(a, 0.0)
        self.assertEqual(
            directory.offer_goodbye(Goodbye.sign(KEY_A, "lobby", 4), 1.0), []
        )
        self.assertIsNotNone(directory.lookup(a.q, "lobby", 1.0))
        self.assertEqual(directory.drops["older-goodbye"], 1)

    def test_tombstone_blocks_replay(self) -> None:
        """After a goodbye, the old announcement replayed (or relayed) is
        dropped; a newer one brings the room back."""
        directory = RoomDirectory(tombstone_lifetime=100.0)
        a = announce(1)
        directory.offer_announcement(a, 0.0)
        directory.offer_goodbye(Goodbye.sign(KEY_A, "lobby", 2), 1.0)
        self.assertEqual(directory.offer_announcement(a, 2.0), [])
        self.assertEqual(directory.offer_announcement(announce(2), 2.0), [])
        self.assertEqual(directory.drops["after-goodbye"], 2)
        self.assertEqual(
            outcomes(directory.offer_announcement(announce(3), 3.0)), [Outcome.ADDED]
        )

    def test_goodbye_before_announcement(self) -> None:
        """A goodbye for an unknown room still keeps older announcements out
        until the tombstone expires."""
        directory = RoomDirectory(tombstone_lifetime=10.0)
        directory.offer_goodbye(Goodbye.sign(KEY_A, "lobby", 9), 0.0)
        self.assertEqual(directory.offer_announcement(announce(8), 1.0), [])
        self.assertEqual(directory.entries(1.0), [])
        self.assertEqual(
            outcomes(directory.offer_announcement(announce(8), 11.0)), [Outcome.ADDED]
        )


KEY_A_Q = announce(1).q


class KnownKeyTests(SynchronousTestCase):
    """knows_key: whether a host key's signature was verified before."""

    def test_entries_and_tombstones_count(self) -> None:
        """A key is known while any of its rooms or goodbyes is held."""
        directory = RoomDirectory(tombstone_lifetime=10.0)
        other = Goodbye.sign(KEY_B, "x", 1).q
        self.assertFalse(directory.knows_key(KEY_A_Q))
        directory.offer_announcement(announce(1, room="a", lifetime=5), 0.0)
        directory.offer_announcement(announce(1, room="b", lifetime=20), 0.0)
        self.assertTrue(directory.knows_key(KEY_A_Q))
        self.assertFalse(directory.knows_key(other))
        directory.offer_goodbye(Goodbye.sign(KEY_A, "b", 2), 1.0)
        directory.expire(6.0)
        self.assertTrue(directory.knows_key(KEY_A_Q))  # b's tombstone
        directory.expire(11.0)
        self.assertFalse(directory.knows_key(KEY_A_Q))

    def test_eviction_forgets(self) -> None:
        """An evicted room's key is no longer known."""
        directory = RoomDirectory(max_entries=1)
        directory.offer_announcement(announce(1, lifetime=5), 0.0)
        b = Announcement.sign(KEY_B, "b", ["192.0.2.1:1"], counter=1, lifetime=9)
        directory.offer_announcement(b, 0.0)
        self.assertFalse(directory.knows_key(KEY_A_Q))
        self.assertTrue(directory.knows_key(b.q))

    def test_shared_drop_counter(self) -> None:
        """Drops go into the counter given, so the listener keeps one set."""
        from collections import Counter

        drops: Counter[str] = Counter()
        directory = RoomDirectory(drops=drops)
        directory.offer_announcement(announce(2), 0.0)
        directory.offer_announcement(announce(1), 0.0)
        self.assertEqual(drops, Counter({"older-counter": 1}))
        self.assertIs(directory.drops, drops)


class BoundTests(SynchronousTestCase):
    """The directory never grows past its bound."""

    def test_evicts_soonest_expiring(self) -> None:
        """When full, the entry that expires soonest is evicted."""
        directory = RoomDirectory(max_entries=3)
        directory.offer_announcement(announce(1, room="a", lifetime=100), 0.0)
        directory.offer_announcement(announce(1, room="b", lifetime=10), 0.0)
        directory.offer_announcement(announce(1, room="c", lifetime=50), 0.0)
        changes = directory.offer_announcement(announce(1, room="d", lifetime=70), 1.0)
        self.assertEqual(outcomes(changes), [Outcome.EVICTED, Outcome.ADDED])
        self.assertEqual(changes[0].entry.announcement.room, "b")
        self.assertEqual(
            [e.announcement.room for e in directory.entries(1.0)], ["a", "c", "d"]
        )

    def test_refresh_does_not_grow(self) -> None:
        """Many refreshes of one room keep one entry and a bounded heap."""
        directory = RoomDirectory()
        a = announce(1)
        for t in range(2000):
            directory.offer_announcement(a, float(t))
        self.assertEqual(len(directory), 1)
        self.assertLess(directory.queued_expiries, 100)

    def test_bad_bound(self) -> None:
        """A directory that could hold nothing is refused with a sentence."""
        with self.assertRaises(ValueError):
            RoomDirectory(max_entries=0)

    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["a", "b", "c", "d", "e"]),
                st.integers(0, 5),
                st.integers(1, 40),
                st.booleans(),
            ),
            max_size=40,
        )
    )
    def test_property_invariants(self, steps: list) -> None:
        """For any sequence of announcements and goodbyes: size stays within
        the bound, each room holds the highest T accepted, and lookups never
        return an expired entry."""
        directory = RoomDirectory(max_entries=3, tombstone_lifetime=15.0)
        now = 0.0
        for room, counter, lifetime, is_goodbye in steps:
            now += 1.0
            if is_goodbye:
                directory.offer_goodbye(Goodbye.sign(KEY_A, room, counter), now)
            else:
                a = announce(counter, room=room, lifetime=lifetime)
                before = directory.lookup(a.q, room, now)
                directory.offer_announcement(a, now)
                after = directory.lookup(a.q, room, now)
                if before is not None and after is not None:
                    self.assertGreaterEqual(
                        after.announcement.counter, before.announcement.counter
                    )
            self.assertLessEqual(len(directory), 3)
            for entry in directory.entries(now):
                self.assertGreater(entry.expires_at, now)
                self.assertTrue(directory.knows_key(entry.announcement.q))
            self.assertEqual(directory.knows_key(KEY_A_Q), len(directory) > 0)
