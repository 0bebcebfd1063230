"""Tests for answering queries in chatroom.core.responder (pure, time passed in)."""

from __future__ import annotations

from collections import Counter

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.trial.unittest import SynchronousTestCase

from chatroom.core.discovery import Announcement, Answer, Query, parse_datagram
from chatroom.core.responder import Responder, Send

KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
QUERIER = ("10.0.0.9", 50000)


class Fixed:
    """A random source that always returns ``value``."""

    def __init__(self, value: float = 0.5) -> None:
        self.value = value

    def random(self) -> float:
        """Return the value."""
        return self.value


def announce(room: str = "lobby", counter: int = 1, key=KEY) -> Announcement:
    return Announcement.sign(
        key, room, ["192.0.2.10:6697"], counter=counter, lifetime=180
    )


def query(
    query_id: bytes = b"q" * 8, room: str | None = "lobby", pad: int = 400
) -> Query:
    return Query(query_id, room=room).padded_to(pad)


class Harness:
    """A responder holding ``lobby`` with its counters."""

    def __init__(self, random: Fixed | None = None, rooms=("lobby",)) -> None:
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.responder = Responder(random or Fixed(), self.drops, self.stats)
        self.held = [announce(room) for room in rooms]
        for a in self.held:
            self.responder.hold(a, None)

    def ask(self, q: Query, source=QUERIER, now: float = 0.0) -> None:
        self.responder.query_received(q, len(q.to_bytes()), source, now)

    def answers(self, now: float) -> list[tuple[Answer, tuple[str, int]]]:
        return [(parse_datagram(s.data), s.address) for s in self.responder.due(now)]


class DelayTests(SynchronousTestCase):
    """Answers wait a random 20-120 ms and go by unicast to the querier."""

    def test_answer_after_delay(self) -> None:
        h = Harness()
        h.ask(query(), now=1.0)
        self.assertAlmostEqual(h.responder.next_due(), 1.070)
        self.assertEqual(h.responder.due(1.069), [])
        [(answer, address)] = h.answers(1.070)
        self.assertEqual(address, QUERIER)
        self.assertEqual(answer.query_id, b"q" * 8)
        self.assertEqual(answer.announcement.to_bytes(), h.held[0].to_bytes())
        self.assertEqual(answer.remaining, 180)
        self.assertIsNone(h.responder.next_due())
        self.assertEqual(h.stats["answers-sent"], 1)

    def test_delay_range(self) -> None:
        """The delay is drawn from 20-120 ms."""
        for value, expected in ((0.0, 0.020), (0.999999, 0.119999)):
            h = Harness(Fixed(value))
            h.ask(query())
            self.assertAlmostEqual(h.responder.next_due(), expected, places=5)

    def test_stop_forgets_pending(self) -> None:
        h = Harness()
        h.ask(query())
        h.responder.stop()
        self.assertIsNone(h.responder.next_due())
        self.assertEqual(h.responder.due(1.0), [])


class MatchingTests(SynchronousTestCase):
    """Only matching, unexpired held announcements are answered."""

    def test_non_matching_query_ignored(self) -> None:
        h = Harness()
        h.ask(query(room="other"))
        h.ask(Query(b"x" * 8, fingerprint_prefix=b"\x00\x01").padded_to(400))
        self.assertIsNone(h.responder.next_due())

    def test_wildcard_query_answered(self) -> None:
        h = Harness(rooms=("a", "b"))
        h.ask(query(room=None, pad=1199))
        self.assertEqual(
            sorted(a.announcement.room for a, _ in h.answers(1.0)), ["a", "b"]
        )

    def test_relayed_lifetime_capped_and_expired_not_answered(self) -> None:
        """A relayed announcement is answered with the time it has left,
        and not at all once that is over."""
        h = Harness(rooms=())
        h.responder.hold(announce(), expires_at=50.0)
        h.ask(query(), now=20.0)
        [(answer, _)] = h.answers(21.0)
        self.assertEqual(answer.remaining, 30)
        h.ask(query(b"n" * 8), now=50.0)
        self.assertIsNone(h.responder.next_due())

    def test_hold_keeps_newest(self) -> None:
        """Holding an older announcement of a held room changes nothing;
        a newer one replaces it; release stops answering."""
        h = Harness(rooms=())
        new, old = announce(counter=2), announce(counter=1)
        h.responder.hold(new, None)
        h.responder.hold(old, None)
        self.assertEqual(h.responder.held(), [new])
        self.assertTrue(h.responder.holds(new))
        self.assertFalse(h.responder.holds(old))
        h.responder.release(new.key)
        self.assertEqual(h.responder.held(), [])


class SizeTests(SynchronousTestCase):
    """No reflection amplification: at most three times the query's size."""

    def test_unpadded_query_too_small(self) -> None:
        h = Harness()
        h.ask(query(pad=0))
        self.assertIsNone(h.responder.next_due())
        self.assertEqual(h.drops["answer-too-large"], 1)

    def test_budget_shared_by_rooms(self) -> None:
        h = Harness(rooms=("a", "b", "c", "d"))
        one = len(Answer(b"q" * 8, 1, h.held[0]).to_bytes())
        q = query(room=None, pad=(2 * one + 2) // 3 + 1)  # room for two
        h.ask(q)
        sent = h.responder.due(1.0)
        self.assertEqual(len(sent), 2)
        self.assertLessEqual(sum(len(s.data) for s in sent), 3 * len(q.to_bytes()))
        self.assertEqual(h.drops["answer-too-large"], 2)


class SuppressionTests(SynchronousTestCase):
    """Someone else's answer as new as ours suppresses ours."""

    def test_same_or_newer_suppresses(self) -> None:
        for counter in (1, 2):
            h = Harness()
            h.ask(query())
            h.responder.answer_seen(Answer(b"q" * 8, 100, announce(counter=counter)))
            self.assertEqual(h.responder.due(1.0), [])
            self.assertEqual(h.stats["answers-suppressed"], 1)

    def test_older_or_other_query_does_not(self) -> None:
        h = Harness(rooms=())
        h.responder.hold(announce(counter=10), None)
        h.ask(query())
        h.responder.answer_seen(Answer(b"q" * 8, 60, announce(counter=3)))
        h.responder.answer_seen(Answer(b"z" * 8, 60, announce(counter=10)))
        h.responder.answer_seen(
            Answer(b"q" * 8, 60, announce(key=OTHER_KEY, counter=99))
        )
        self.assertEqual(len(h.responder.due(1.0)), 1)

    def test_duplicate_query_answered_once(self) -> None:
        h = Harness()
        h.ask(query())
        h.ask(query())
        self.assertEqual(len(h.responder.due(1.0)), 1)


class RateLimitTests(SynchronousTestCase):
    """10 answered queries a second per source, 100 in all."""

    def test_per_source(self) -> None:
        h = Harness()
        for i in range(15):
            h.ask(query(bytes([i]) * 8))
        h.ask(query(b"o" * 8), source=("10.0.0.8", 1))
        self.assertEqual(len(h.responder.due(0.5)), 11)
        self.assertEqual(h.drops["rate-limited"], 5)
        h.ask(query(b"n" * 8), now=1.0)
        self.assertEqual(len(h.responder.due(1.5)), 1)

    def test_flood_from_many_sources(self) -> None:
        h = Harness()
        for i in range(5000):
            h.ask(query(i.to_bytes(8, "big")), source=(f"10.{i // 256}.{i % 256}.1", 1))
        self.assertLessEqual(len(h.responder.due(1.0)), 100)
        self.assertEqual(h.drops["rate-limited"], 4900)

    def test_queries_with_no_match_cost_nothing(self) -> None:
        """Queries we have nothing for do not use a source's allowance."""
        h = Harness()
        for i in range(50):
            h.ask(query(bytes([i]) * 8, room="other"))
        h.ask(query())
        expected = Answer(b"q" * 8, 180, h.held[0]).to_bytes()
        self.assertEqual(h.responder.due(1.0), [Send(expected, QUERIER)])
        self.assertEqual(h.drops["rate-limited"], 0)

    def test_pending_bounded(self) -> None:
        """At most 256 answers wait at once; more are dropped and counted."""
        h = Harness()
        for second in range(3):
            for i in range(100):
                h.ask(
                    query((second * 100 + i).to_bytes(8, "big")),
                    source=(f"10.{second}.{i}.1", 1),
                    now=float(second),
                )
        self.assertEqual(h.drops["too-many-pending-answers"], 44)
        self.assertEqual(len(h.responder.due(10.0)), 256)
