"""Tests for the expanding-ring search state machine in chatroom.core.search."""

from __future__ import annotations

import hashlib
import itertools

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatroom.core.discovery import Announcement, Answer, Query
from chatroom.core.search import (
    DEFAULT_RINGS,
    ExpandingRingSearch,
    Ring,
    SearchResult,
    SearchState,
)

KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
LOBBY = Announcement.sign(KEY, "lobby", ["192.0.2.1:6697"], counter=1, lifetime=60)
OTHER = Announcement.sign(KEY, "other", ["192.0.2.1:6697"], counter=1, lifetime=60)
OTHER_HOST_LOBBY = Announcement.sign(
    OTHER_KEY, "lobby", ["192.0.2.2:6697"], counter=1, lifetime=60
)


class SearchHarness:
    """Drives one search with a task.Clock and records what it does."""

    def __init__(self, rings=DEFAULT_RINGS, **kwargs) -> None:
        self.clock = Clock()
        self.sent: list[tuple[Query, int, float]] = []
        self.results: list[SearchResult] = []
        counter = itertools.count(1)
        self.search = ExpandingRingSearch(
            self.clock,
            send_query=lambda q, ttl: self.sent.append((q, ttl, self.clock.seconds())),
            on_finished=self.results.append,
            rings=rings,
            new_query_id=lambda: next(counter).to_bytes(8, "big"),
            **kwargs,
        )


class ExpandingRingSearchTests(SynchronousTestCase):
    """The search widens ring by ring and stops at the first valid answer."""

    def test_rings_then_not_found(self) -> None:
        """With no answers, one query per ring goes out at the ring times
        with growing TTL, then the search reports not found."""
        h = SearchHarness(room="lobby")
        h.search.start()
        h.clock.pump([0.25] * 40)
        self.assertEqual([ttl for _, ttl, _ in h.sent], [1, 2, 4, 8, 16])
        self.assertEqual([t for _, _, t in h.sent], [0.0, 0.5, 1.25, 2.25, 3.75])
        self.assertEqual(len({q.query_id for q, _, _ in h.sent}), 5)
        self.assertEqual(
            h.results, [SearchResult(SearchState.NOT_FOUND, None, None, 5)]
        )
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_not_found_exactly_at_last_timeout(self) -> None:
        """The search ends at the sum of the ring timeouts, not before."""
        h2 = SearchHarness(room="lobby")
        h2.search.start()
        for ring in DEFAULT_RINGS[:-1]:
            h2.clock.advance(ring.timeout)
        self.assertEqual(h2.search.state, SearchState.WAITING)
        h2.clock.advance(DEFAULT_RINGS[-1].timeout - 0.01)
        self.assertEqual(h2.results, [])
        h2.clock.advance(0.01)
        self.assertEqual(h2.search.state, SearchState.NOT_FOUND)

    def test_queries_are_padded_and_filtered(self) -> None:
        """Queries carry the room and fingerprint prefix and are padded to
        400 bytes so answers may be up to three times larger."""
        h = SearchHarness(room="lobby", fingerprint_prefix=b"\x34\x75")
        h.search.start()
        query = h.sent[0][0]
        self.assertEqual((query.room, query.fingerprint_prefix), ("lobby", b"\x34\x75"))
        self.assertEqual(len(query.to_bytes()), 400)

    def test_found_in_second_ring(self) -> None:
        """An answer to the second ring's query ends the search with that
        ring's TTL and cancels the timer."""
        h = SearchHarness(room="lobby")
        h.search.start()
        h.clock.advance(0.5)
        second_id = h.sent[1][0].query_id
        self.assertTrue(h.search.answer_received(Answer(second_id, 60, LOBBY)))
        self.assertEqual(h.results, [SearchResult(SearchState.FOUND, LOBBY, 2, 2)])
        self.assertEqual(h.clock.getDelayedCalls(), [])
        h.clock.advance(100)
        self.assertEqual(len(h.sent), 2)
        self.assertEqual(len(h.results), 1)

    def test_late_answer_to_earlier_ring_counts(self) -> None:
        """An answer to ring 1's query that arrives during ring 2 counts,
        reporting TTL 1."""
        h = SearchHarness(room="lobby")
        h.search.start()
        first_id = h.sent[0][0].query_id
        h.clock.advance(0.6)
        self.assertTrue(h.search.answer_received(Answer(first_id, 60, LOBBY)))
        self.assertEqual(h.results[0].ttl, 1)

    def test_ignores_unrelated_answers(self) -> None:
        """Answers with an unknown query id, or for another room, do not
        end the search."""
        h = SearchHarness(room="lobby")
        h.search.start()
        own_id = h.sent[0][0].query_id
        self.assertFalse(h.search.answer_received(Answer(b"\xff" * 8, 60, LOBBY)))
        self.assertFalse(h.search.answer_received(Answer(own_id, 60, OTHER)))
        self.assertEqual(h.search.state, SearchState.WAITING)

    def test_fingerprint_filter(self) -> None:
        """A search by fingerprint prefix ignores another key's room of the
        same name and accepts the room of the key whose fingerprint starts
        with the prefix."""
        prefix = hashlib.sha256(LOBBY.q).digest()[:8]
        self.assertFalse(hashlib.sha256(OTHER_HOST_LOBBY.q).digest().startswith(prefix))
        h = SearchHarness(room="lobby", fingerprint_prefix=prefix)
        h.search.start()
        own_id = h.sent[0][0].query_id
        self.assertFalse(h.search.answer_received(Answer(own_id, 60, OTHER_HOST_LOBBY)))
        self.assertEqual(h.search.state, SearchState.WAITING)
        self.assertTrue(h.search.answer_received(Answer(own_id, 60, LOBBY)))
        self.assertEqual(h.results, [SearchResult(SearchState.FOUND, LOBBY, 1, 1)])

    def test_fingerprint_only(self) -> None:
        """A search by fingerprint alone finds any room of that key and
        none of another key's."""
        h = SearchHarness(fingerprint_prefix=hashlib.sha256(LOBBY.q).digest()[:2])
        h.search.start()
        own_id = h.sent[0][0].query_id
        self.assertFalse(h.search.answer_received(Answer(own_id, 60, OTHER_HOST_LOBBY)))
        self.assertTrue(h.search.answer_received(Answer(own_id, 60, OTHER)))
        self.assertEqual(h.results[0].announcement, OTHER)

    def test_answers_after_end_ignored(self) -> None:
        """Once found, further answers change nothing."""
        h = SearchHarness(room="lobby")
        h.search.start()
        own_id = h.sent[0][0].query_id
        h.search.answer_received(Answer(own_id, 60, LOBBY))
        self.assertFalse(h.search.answer_received(Answer(own_id, 60, LOBBY)))
        self.assertEqual(len(h.results), 1)

    def test_cancel(self) -> None:
        """cancel() stops the timers and reports once; later calls do
        nothing."""
        h = SearchHarness(room="lobby")
        h.search.start()
        h.search.cancel()
        h.search.cancel()
        self.assertEqual(
            h.results, [SearchResult(SearchState.CANCELLED, None, None, 1)]
        )
        self.assertEqual(h.clock.getDelayedCalls(), [])
        self.assertFalse(h.results[0].found)

    def test_start_twice_refused(self) -> None:
        """A search runs once."""
        h = SearchHarness(room="lobby")
        h.search.start()
        self.assertRaises(RuntimeError, h.search.start)

    def test_bad_arguments(self) -> None:
        """A search needs rings and something to look for."""
        self.assertRaises(ValueError, SearchHarness, rings=(), room="lobby")
        self.assertRaises(ValueError, SearchHarness)
        self.assertRaises(ValueError, Ring, 0, 1.0)
        self.assertRaises(ValueError, Ring, 1, 0.0)

    def test_single_ring(self) -> None:
        """A one-ring search sends once and ends after its timeout."""
        h = SearchHarness(rings=[Ring(3, 2.0)], room="lobby")
        h.search.start()
        h.clock.advance(2.0)
        self.assertEqual([ttl for _, ttl, _ in h.sent], [3])
        self.assertEqual(h.search.state, SearchState.NOT_FOUND)
