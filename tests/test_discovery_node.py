"""Tests for the discovery state of hosts and listeners in chatroom.core.node.

Pure: every call takes ``now``; nothing is sent, the tests read what the
nodes return.
"""

from __future__ import annotations

import hashlib
import itertools

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.trial.unittest import SynchronousTestCase

from chatroom.core.announcer import Announcer
from chatroom.core.directory import Outcome, RoomDirectory
from chatroom.core.discovery import (
    Announcement,
    Answer,
    Goodbye,
    Query,
    RoomAddress,
    parse_datagram,
)
from chatroom.core.node import HostNode, ListenerNode
from chatroom.core.schedule import AnnounceSchedule

KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
GROUP = ("239.255.67.82", 47667)
HOST = ("10.0.0.1", 47667)
QUERIER = ("10.0.0.9", 50000)


class Half:
    """A random source whose random() is always 0.5."""

    def random(self) -> float:
        """Return 0.5."""
        return 0.5


def announce(counter: int, address: str = "192.0.2.10:6697", lifetime: int = 180):
    return Announcement.sign(
        KEY, "lobby", [address], counter=counter, lifetime=lifetime
    )


def forged(i: int) -> bytes:
    """A well-formed announcement under a fresh made-up key with a
    signature that cannot be valid: what a flood of spoofed datagrams
    looks like."""
    return Announcement(
        q=hashlib.sha256(i.to_bytes(8, "big")).digest(),
        room=f"spam{i % 1000}",
        addresses=["192.0.2.66:6697"],
        counter=1,
        lifetime=180,
        flags=0,
        signature=bytes(64),
    ).to_bytes()


def spoofed_source(i: int) -> tuple[str, int]:
    return (f"10.{(i >> 16) % 256}.{(i >> 8) % 256}.{i % 256}", 40000)


def padded_query(query_id: bytes = b"q" * 8, room: str | None = "lobby") -> bytes:
    return Query(query_id, room=room).padded_to(400).to_bytes()


class SignatureFairnessTests(SynchronousTestCase):
    """Issue 13: a flood of signed-looking announcements from many spoofed
    sources cannot crowd out a known room's renewal."""

    def test_known_room_renewal_verified_during_flood(self) -> None:
        """5000 forged announcements from 5000 sources in the same instant
        spend the whole budget for unknown keys; the known room's renewal
        (a new address, a new T) arriving in the middle of the flood is
        still verified and updates the directory."""
        node = ListenerNode(Half())
        node.datagram_received(announce(1).to_bytes(), HOST, 0.0)
        renewal = announce(2, address="192.0.2.20:7000")
        changes = []
        for i in range(5000):
            changes += node.datagram_received(
                forged(i), spoofed_source(i), 10.0
            ).changes
            if i == 2500:
                changes += node.datagram_received(
                    renewal.to_bytes(), HOST, 10.0
                ).changes
        entry = node.directory.lookup(renewal.q, "lobby", 10.0)
        assert entry is not None
        self.assertEqual(entry.announcement, renewal)
        self.assertEqual(
            [
                (c.outcome, c.entry.announcement.counter)
                for c in changes
                if c.entry.announcement.q == renewal.q
            ],
            [(Outcome.UPDATED, 2)],
        )
        # The flood was capped: the first announcement's check, the unknown
        # share's 200 and the renewal's one; the rest dropped unchecked.
        self.assertEqual(node.stats["signatures-checked"], 202)
        self.assertEqual(node.drops["signature-budget"], 4800)
        self.assertEqual(node.drops["bad-signature"], 200)

    def test_unchanged_renewal_costs_no_check(self) -> None:
        """During a flood that has spent every share, the host's repeat of
        its unchanged announcement still refreshes the room: the directory
        holds those exact bytes, so they need no check."""
        node = ListenerNode(Half())
        a = announce(1, lifetime=30)
        node.datagram_received(a.to_bytes(), HOST, 0.0)
        for i in range(2000):
            node.datagram_received(forged(i), spoofed_source(i), 20.0)
        node.datagram_received(a.to_bytes(), HOST, 20.0)
        entry = node.directory.lookup(a.q, "lobby", 45.0)
        assert entry is not None
        self.assertEqual(entry.expires_at, 50.0)


class ListenerNodeTests(SynchronousTestCase):
    """The directory, relaying and own queries."""

    def setUp(self) -> None:
        self.node = ListenerNode(Half())
        self.node.start(0.0)

    def test_changes_reported(self) -> None:
        """Added and removed rooms are reported; a refresh is not."""
        a = announce(1)
        r1 = self.node.datagram_received(a.to_bytes(), HOST, 0.0)
        r2 = self.node.datagram_received(a.to_bytes(), HOST, 1.0)
        r3 = self.node.datagram_received(
            Goodbye.sign(KEY, "lobby", 2).to_bytes(), HOST, 2.0
        )
        self.assertEqual(
            [[c.outcome for c in r.changes] for r in (r1, r2, r3)],
            [[Outcome.ADDED], [], [Outcome.REMOVED]],
        )

    def test_one_set_of_drop_counters(self) -> None:
        """Malformed datagrams and stale announcements count in one place."""
        self.node.datagram_received(announce(2).to_bytes(), HOST, 0.0)
        self.node.datagram_received(announce(1).to_bytes(), HOST, 0.0)
        self.node.datagram_received(b"junk", HOST, 0.0)
        self.assertEqual(dict(self.node.drops), {"older-counter": 1, "truncated": 1})
        self.assertIs(self.node.drops, self.node.directory.drops)

    def test_given_directory_shares_counter(self) -> None:
        directory = RoomDirectory(max_entries=5)
        node = ListenerNode(Half(), directory)
        node.datagram_received(b"junk", HOST, 0.0)
        self.assertEqual(directory.drops["truncated"], 1)

    def test_expiry_sweep(self) -> None:
        self.node.datagram_received(announce(1, lifetime=3).to_bytes(), HOST, 0.0)
        self.assertEqual(self.node.next_wake(), 1.0)
        outcomes = []
        while (at := self.node.next_wake()) is not None and at <= 5.0:
            outcomes += [c.outcome for c in self.node.wake(at).changes]
        self.assertEqual(outcomes, [Outcome.EXPIRED])

    def test_own_query_not_answered(self) -> None:
        """A node holding a room does not answer its own query, but does
        answer someone else's."""
        self.node.hold(announce(1), 0.0)
        own = Query(b"o" * 8, room="lobby").padded_to(400)
        self.node.query_sent(own)
        self.node.datagram_received(own.to_bytes(), QUERIER, 0.0)
        self.assertEqual(self.node.stats["own-query"], 1)
        self.node.datagram_received(padded_query(), QUERIER, 0.0)
        sends = self.node.wake(0.07).sends
        self.assertEqual([s.address for s in sends], [QUERIER])

    def test_relays_newest_until_goodbye(self) -> None:
        old, new = announce(1), announce(2, address="192.0.2.2:2")
        self.node.hold(old, 0.0)
        self.node.datagram_received(new.to_bytes(), HOST, 0.0)
        self.assertEqual(self.node.responder.held(), [new])
        self.node.datagram_received(Goodbye.sign(KEY, "lobby", 3).to_bytes(), HOST, 0.0)
        self.assertEqual(self.node.responder.held(), [])

    def test_answers_returned_for_searches(self) -> None:
        answer = Answer(b"q" * 8, 60, announce(1))
        reaction = self.node.datagram_received(answer.to_bytes(), HOST, 0.0)
        self.assertEqual(reaction.answers, (answer,))
        self.assertEqual([c.outcome for c in reaction.changes], [Outcome.ADDED])

    def test_newest(self) -> None:
        old, new = announce(1), announce(2)
        self.node.datagram_received(new.to_bytes(), HOST, 0.0)
        self.assertEqual(self.node.newest(old, 0.0), new)
        self.assertEqual(self.node.newest(new, 0.0), new)

    def test_stop(self) -> None:
        self.node.stop()
        self.assertIsNone(self.node.next_wake())


class HostNodeTests(SynchronousTestCase):
    """A host announces on schedule and answers for its own rooms."""

    def setUp(self) -> None:
        counter = itertools.count(1)
        self.node = HostNode(
            Announcer(
                KEY, lambda: next(counter), ["lobby"], ["192.0.2.10:6697"],
                AnnounceSchedule(Half()),
            ),
            GROUP,
            Half(),
        )  # fmt: skip
        self.node.start(0.0)

    def run_until(self, until: float) -> list[tuple[float, object, tuple[str, int]]]:
        sent = []
        while (at := self.node.next_wake()) is not None and at <= until:
            sent += [
                (at, parse_datagram(s.data), s.address)
                for s in self.node.wake(at).sends
            ]
        return sent

    def test_announces_to_group(self) -> None:
        sent = self.run_until(2.0)
        self.assertEqual([(t, a) for t, _, a in sent], [(0.125, GROUP), (1.125, GROUP)])
        self.assertEqual(self.node.stats["announcements-sent"], 2)

    def test_answer_interleaved_with_schedule(self) -> None:
        """An answer is due 70 ms after the query, by unicast, between
        announcements."""
        self.run_until(0.5)
        self.node.datagram_received(padded_query(), QUERIER, 0.5)
        sent = self.run_until(1.2)
        self.assertEqual(
            [(round(t, 3), type(d).__name__, a) for t, d, a in sent],
            [(0.57, "Answer", QUERIER), (1.125, "Announcement", GROUP)],
        )

    def test_own_answer_free_to_check(self) -> None:
        """Another responder's answer carrying our own announcement costs
        no signature check and suppresses ours."""
        self.node.datagram_received(padded_query(), QUERIER, 0.0)
        mine = self.node.announcer.announcements[0]
        self.node.datagram_received(Answer(b"q" * 8, 60, mine).to_bytes(), HOST, 0.01)
        self.assertEqual(self.node.stats["signatures-checked"], 0)
        self.assertEqual(self.node.stats["answers-suppressed"], 1)

    def test_other_hosts_announcements_ignored(self) -> None:
        other = Announcement.sign(
            OTHER_KEY, "x", ["192.0.2.1:1"], counter=1, lifetime=9
        )
        self.node.datagram_received(other.to_bytes(), HOST, 0.0)
        self.assertEqual(self.node.stats["ignored"], 1)
        self.assertEqual(self.node.stats["signatures-checked"], 0)

    def test_room_changes(self) -> None:
        added = self.node.add_room("dev").sends
        self.assertEqual([parse_datagram(s.data).room for s in added], ["dev"])
        removed = self.node.remove_room("dev").sends
        [goodbye] = [parse_datagram(s.data) for s in removed]
        self.assertIsInstance(goodbye, Goodbye)
        self.assertEqual(self.node.remove_room("dev").sends, ())
        self.node.datagram_received(padded_query(room="dev"), QUERIER, 0.0)
        self.assertIsNone(self.node.responder.next_due())

    def test_update_addresses_answers_with_new(self) -> None:
        self.node.update_addresses(["192.0.2.99:1"], 5.0)
        self.node.datagram_received(padded_query(), QUERIER, 5.0)
        answers = [d for _, d, _ in self.run_until(5.1) if isinstance(d, Answer)]
        self.assertEqual(
            answers[0].announcement.addresses, (RoomAddress("192.0.2.99", 1),)
        )

    def test_goodbye_then_silence(self) -> None:
        self.node.datagram_received(padded_query(), QUERIER, 0.0)
        sends = self.node.say_goodbye().sends
        self.assertEqual([type(parse_datagram(s.data)) for s in sends], [Goodbye])
        self.assertEqual(self.node.say_goodbye().sends, ())
        self.assertIsNone(self.node.next_wake())
        self.node.datagram_received(padded_query(b"w" * 8), QUERIER, 1.0)
        self.assertIsNone(self.node.next_wake())
