"""Tests for the Twisted discovery edge in chatroom.discovery.

The decisions (what to announce and answer, when, and what to drop) are
tested on the pure core in test_discovery_announcer, test_discovery_responder,
test_discovery_receiver and test_discovery_node.  Here: that the protocols
set their sockets up, hand datagrams to the core, send what it returns and
keep their one timer right.  Most tests use the fake transport and network
from tests/discovery_fakes.py with a task.Clock; a few use real sockets, and
every real multicast datagram goes out of 127.0.0.1 to a random high port.
"""

from __future__ import annotations

import itertools
import random
import socket
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatroom.core.directory import DirectoryChange, Outcome
from chatroom.core.discovery import (
    Announcement,
    Answer,
    Goodbye,
    Query,
    RoomAddress,
    parse_datagram,
    short_fingerprint,
)
from chatroom.core.schedule import AnnounceSchedule
from chatroom.core.search import Ring, SearchState
from chatroom.discovery import (
    IP_MULTICAST_ALL,
    DiscoveryService,
    HostedRoom,
    HostProtocol,
    ListenerProtocol,
)
from chatroom.wellknown import DISCOVERY_TTL
from tests.discovery_fakes import FakeMulticastTransport, FakeNetwork
from tests.test_discovery_node import forged

KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
GROUP = "239.255.67.82"
PORT = 47667
HOST_ADDRESS = ("127.0.0.1", PORT)
QUERIER = ("127.0.0.9", 50000)


def loopback_source(i: int) -> tuple[str, int]:
    """The C{i}th of many sources on this machine (127.0.0.0/8): the
    protocols under test listen on loopback and drop other sources."""
    return (f"127.{(i >> 16) % 256}.{(i >> 8) % 256}.{i % 256}", 40000)


class FixedRandom(random.Random):
    """A random source whose random() is always 0.5 (so answer delays are
    70 ms and the schedule has no jitter)."""

    def random(self) -> float:
        """Return 0.5."""
        return 0.5


class ValueRandom(random.Random):
    """A random source whose random() is always the given value."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        """Return the value."""
        return self.value


class CounterSource:
    """A fake persisted counter: 1, 2, 3 ..."""

    def __init__(self, start: int = 1) -> None:
        self.values = itertools.count(start)
        self.calls = 0

    def __call__(self) -> int:
        """Return the next value."""
        self.calls += 1
        return next(self.values)


def make_host(
    clock: Clock,
    network: FakeNetwork | None = None,
    segment: int = 0,
    address: tuple[str, int] = HOST_ADDRESS,
    rooms: Any = ("lobby",),
    counter: CounterSource | None = None,
) -> tuple[HostProtocol, FakeMulticastTransport]:
    """A started host protocol on a fake transport."""
    rnd = FixedRandom()
    host = HostProtocol(
        clock,
        GROUP,
        PORT,
        "127.0.0.1",
        KEY,
        counter or CounterSource(),
        rooms,
        ["192.0.2.10:6697"],
        schedule=AnnounceSchedule(rnd),
        random=rnd,
    )
    transport = FakeMulticastTransport(network, address, segment)
    transport.attach(host)
    return host, transport


def make_listener(
    clock: Clock,
    network: FakeNetwork | None = None,
    segment: int = 0,
    address: str = "127.0.0.2",
    changes: list | None = None,
) -> tuple[ListenerProtocol, FakeMulticastTransport, FakeMulticastTransport]:
    """A started listener (and its query socket) on fake transports."""
    ids = itertools.count(1)
    listener = ListenerProtocol(
        clock,
        GROUP,
        PORT,
        "127.0.0.1",
        on_change=changes.append if changes is not None else None,
        random=FixedRandom(),
        new_query_id=lambda: (next(ids) + 1000 * segment).to_bytes(8, "big"),
    )
    group_transport = FakeMulticastTransport(network, (address, PORT), segment)
    query_transport = FakeMulticastTransport(network, (address, 50000), segment)
    group_transport.attach(listener)
    query_transport.attach(listener.query_protocol)
    return listener, group_transport, query_transport


def answers_in(transport: FakeMulticastTransport) -> list[bytes]:
    """The answer datagrams a fake transport sent."""
    return [w[0] for w in transport.written if w[0][5] == 4]


def query_bytes(
    query_id: bytes = b"q" * 8, room: str | None = "lobby", pad: int = 400
) -> bytes:
    """A query as bytes, padded to ``pad``."""
    return Query(query_id, room=room).padded_to(pad).to_bytes()


class SocketSetupTests(SynchronousTestCase):
    """Sockets are set up to send and receive only where they are told."""

    def test_host_socket_setup(self) -> None:
        """The host sets its outgoing interface, TTL, loopback, turns
        IP_MULTICAST_ALL off and joins on the given interface."""
        clock = Clock()
        host, transport = make_host(clock)
        self.assertEqual(transport.outgoing_interface, "127.0.0.1")
        self.assertEqual(transport.groups, [(GROUP, "127.0.0.1")])
        self.assertEqual(transport.ttl, DISCOVERY_TTL)
        self.assertTrue(transport.loopback)
        self.assertIn(
            (socket.IPPROTO_IP, IP_MULTICAST_ALL, 0), transport.handle.options
        )
        self.assertIsNone(self.successResultOf(host.ready))

    def test_listener_socket_setup(self) -> None:
        """The listener joins on the interface; its query socket sends out
        of the interface and joins nothing."""
        listener, group_t, query_t = make_listener(Clock())
        self.assertEqual(group_t.groups, [(GROUP, "127.0.0.1")])
        self.assertEqual(query_t.outgoing_interface, "127.0.0.1")
        self.assertEqual(query_t.groups, [])

    def test_interface_required(self) -> None:
        """Without an interface address the protocols refuse to be made."""
        with self.assertRaises(ValueError) as caught:
            ListenerProtocol(Clock(), GROUP, PORT, "")
        self.assertIn("interface", str(caught.exception))


class HostAnnounceTests(SynchronousTestCase):
    """The host announces on the schedule and says goodbye."""

    def test_announces_on_schedule(self) -> None:
        """Announcements go to the group at 0.125 s, then 1, 2, 4 ... s
        later, always the same bytes, signed once."""
        clock = Clock()
        counter = CounterSource()
        host, transport = make_host(clock, counter=counter)
        times = []
        for _ in range(8):
            before = len(transport.written)
            while len(transport.written) == before:
                clock.advance(0.125)
            times.append(clock.seconds())
        self.assertEqual(
            times, [0.125, 1.125, 3.125, 7.125, 15.125, 31.125, 63.125, 123.125]
        )
        self.assertEqual(
            {w[0] for w in transport.written}, {host.announcements[0].to_bytes()}
        )
        self.assertEqual({w[1] for w in transport.written}, {(GROUP, PORT)})
        self.assertEqual(counter.calls, 1)
        a = parse_datagram(transport.written[0][0])
        assert isinstance(a, Announcement)
        self.assertEqual(
            (a.room, a.counter, a.addresses),
            ("lobby", 1, (RoomAddress("192.0.2.10", 6697),)),
        )

    def test_update_addresses(self) -> None:
        """A new address gets a new counter and restarts the burst."""
        clock = Clock()
        host, transport = make_host(clock)
        clock.advance(200)
        host.update_addresses(["[2001:db8::1]:7000"])
        transport.written.clear()
        clock.advance(0.125)
        a = parse_datagram(transport.written[0][0])
        assert isinstance(a, Announcement)
        self.assertEqual((a.counter, str(a.addresses[0])), (2, "[2001:db8::1]:7000"))
        clock.advance(1.0)
        self.assertEqual(len(transport.written), 2)

    def test_goodbye(self) -> None:
        """say_goodbye sends a signed goodbye with a newer counter, stops
        announcing, and only the first call sends."""
        clock = Clock()
        host, transport = make_host(clock)
        clock.advance(1)
        transport.written.clear()
        host.say_goodbye()
        host.say_goodbye()
        self.assertEqual(len(transport.written), 1)
        g = parse_datagram(transport.written[0][0])
        assert isinstance(g, Goodbye)
        self.assertEqual(g.room, "lobby")
        self.assertEqual(host.stats["goodbyes-sent"], 1)
        self.assertGreater(g.counter, host.announcements[0].counter)
        self.assertEqual(transport.written[0][1], (GROUP, PORT))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_stop_cancels_timers(self) -> None:
        """Stopping the port leaves no timers behind."""
        clock = Clock()
        host, transport = make_host(clock)
        transport.stopListening()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_send_failure_counted(self) -> None:
        """An unreachable network is logged as a warning and counted, not
        raised."""
        clock = Clock()
        host, transport = make_host(clock)
        transport.fail_writes = True
        clock.advance(0.125)
        self.assertEqual(host.drops["send-failed"], 1)


class HostAnswerTests(SynchronousTestCase):
    """The host answers queries for its rooms, carefully."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.host, self.transport = make_host(self.clock)
        self.clock.advance(0.2)  # past the first announcement
        self.transport.written.clear()

    def answers(self) -> list[tuple[Answer, tuple[str, int]]]:
        """The answers written so far, with their destinations."""
        return [
            (parse_datagram(data), address)
            for data, address, _ in self.transport.written
            if parse_datagram(data).__class__ is Answer
        ]

    def test_answers_after_delay_by_unicast(self) -> None:
        """A matching query is answered by unicast to its source after the
        random delay (70 ms here), carrying the announcement verbatim."""
        data = query_bytes()
        self.host.datagramReceived(data, QUERIER)
        self.clock.advance(0.069)
        self.assertEqual(self.answers(), [])
        self.clock.advance(0.001)
        [(answer, address)] = self.answers()
        self.assertEqual(address, QUERIER)
        self.assertEqual(answer.query_id, b"q" * 8)
        self.assertEqual(
            answer.announcement.to_bytes(), self.host.announcements[0].to_bytes()
        )
        self.assertLessEqual(len(self.transport.written[0][0]), 3 * len(data))

    def test_loopback_host_ignores_other_machines(self) -> None:
        """A host announcing on loopback answers nobody outside this
        machine, even by unicast to its port: the query is dropped and
        counted, and nothing is sent."""
        self.host.datagramReceived(query_bytes(), ("192.0.2.9", 50000))
        self.clock.advance(1)
        self.assertEqual(self.answers(), [])
        self.assertEqual(self.host.drops["not-from-loopback"], 1)

    def test_suppressed_by_other_answer(self) -> None:
        """Someone else's answer to the same query with the same or a newer
        T, seen during the delay, suppresses ours."""
        self.host.datagramReceived(query_bytes(), QUERIER)
        same = Answer(b"q" * 8, 100, self.host.announcements[0])
        self.host.datagramReceived(same.to_bytes(), ("127.0.0.7", PORT))
        self.clock.advance(1)
        self.assertEqual(self.answers(), [])
        self.assertEqual(self.host.stats["answers-suppressed"], 1)

    def test_query_flood_bounded(self) -> None:
        """A flood from many sources costs at most 100 answers a second and
        leaves the host announcing on time."""
        for i in range(5000):
            source = (f"127.{i // 65536}.{(i // 256) % 256}.{i % 256}", 1)
            self.host.datagramReceived(
                query_bytes(query_id=i.to_bytes(8, "big")), source
            )
        self.clock.advance(0.2)
        self.assertLessEqual(len(self.answers()), 100)
        self.assertGreaterEqual(self.host.drops["rate-limited"], 4900)
        self.transport.written.clear()
        self.clock.advance(1.0)
        self.assertEqual(
            [parse_datagram(w[0]).__class__ for w in self.transport.written],
            [Announcement],
        )

    def test_malformed_datagrams_dropped(self) -> None:
        """Garbage, truncated, oversized and forged datagrams are counted
        by reason; nothing is raised or sent."""
        good = query_bytes()
        self.host.datagramReceived(b"", QUERIER)
        self.host.datagramReceived(b"hello world", QUERIER)
        self.host.datagramReceived(good[:10], QUERIER)
        self.host.datagramReceived(good + bytes(1200), QUERIER)
        self.clock.advance(1)
        self.assertEqual(self.answers(), [])
        self.assertEqual(
            dict(self.host.drops), {"truncated": 2, "bad-magic": 1, "oversized": 1}
        )

    def test_one_timer(self) -> None:
        """However many answers wait, the protocol keeps one timer, armed
        for the earliest thing due."""
        for i in range(20):
            self.host.datagramReceived(
                query_bytes(query_id=i.to_bytes(8, "big")), (f"127.0.1.{i}", 1)
            )
        [call] = self.clock.getDelayedCalls()
        self.assertAlmostEqual(call.getTime(), 0.27)
        self.clock.advance(0.07)
        self.assertEqual(len(self.answers()), 20)
        [call] = self.clock.getDelayedCalls()
        self.assertAlmostEqual(call.getTime(), 1.2)  # the next announcement

    def test_no_answers_after_goodbye(self) -> None:
        """Once the host said goodbye it answers nothing."""
        self.host.datagramReceived(query_bytes(), QUERIER)
        self.host.say_goodbye()
        self.transport.written.clear()
        self.host.datagramReceived(query_bytes(query_id=b"w" * 8), QUERIER)
        self.clock.advance(1)
        self.assertEqual(self.answers(), [])


class ListenerTests(SynchronousTestCase):
    """The listener keeps the directory and drops bad input before any
    state changes."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.changes: list[DirectoryChange] = []
        self.listener, self.group_t, self.query_t = make_listener(
            self.clock, changes=self.changes
        )
        self.announcement = Announcement.sign(
            KEY, "lobby", ["192.0.2.10:6697"], counter=5, lifetime=30
        )

    def feed(self, data: bytes) -> None:
        """Deliver one datagram to the listener's group socket."""
        self.listener.datagramReceived(data, HOST_ADDRESS)

    def assert_unchanged(self) -> None:
        """Nothing was added to the directory or reported."""
        self.assertEqual(self.changes, [])
        self.assertEqual(len(self.listener.directory), 0)

    def test_announcement_added(self) -> None:
        """A valid announcement appears in the directory and is reported."""
        self.feed(self.announcement.to_bytes())
        self.assertEqual([c.outcome for c in self.changes], [Outcome.ADDED])
        entry = self.listener.directory.lookup(
            self.announcement.q, "lobby", self.clock.seconds()
        )
        assert entry is not None
        self.assertEqual(entry.announcement, self.announcement)

    def test_forged_signature(self) -> None:
        """A datagram with a bad signature is dropped and counted."""
        data = bytearray(self.announcement.to_bytes())
        data[-5] ^= 0x40
        self.feed(bytes(data))
        self.assert_unchanged()
        self.assertEqual(self.listener.drops["bad-signature"], 1)

    def test_forged_by_other_key(self) -> None:
        """A valid signature by another key over a datagram claiming our
        host's Q is dropped; a replacement by that forgery never happens."""
        self.feed(self.announcement.to_bytes())
        forged = attrs.evolve(
            self.announcement, counter=6, addresses=["203.0.113.66:6697"]
        )
        forged = attrs.evolve(forged, signature=OTHER_KEY.sign(forged.signed_bytes()))
        self.feed(forged.to_bytes())
        entry = self.listener.directory.lookup(self.announcement.q, "lobby", 0.0)
        assert entry is not None
        self.assertEqual(entry.announcement.counter, 5)
        self.assertEqual(self.listener.drops["bad-signature"], 1)
        self.assertEqual(len(self.changes), 1)

    def test_replay_older_counter(self) -> None:
        """A replay of an older announcement is dropped and counted."""
        self.feed(self.announcement.to_bytes())
        older = Announcement.sign(KEY, "lobby", ["192.0.2.1:1"], counter=4, lifetime=30)
        self.feed(older.to_bytes())
        self.assertEqual(len(self.changes), 1)
        self.assertEqual(self.listener.directory.drops["older-counter"], 1)

    def test_equal_counter_different_content(self) -> None:
        """Equal T with different content keeps the first; counted."""
        self.feed(self.announcement.to_bytes())
        twin = Announcement.sign(KEY, "lobby", ["192.0.2.1:1"], counter=5, lifetime=30)
        self.feed(twin.to_bytes())
        entry = self.listener.directory.lookup(self.announcement.q, "lobby", 0.0)
        assert entry is not None
        self.assertEqual(entry.announcement, self.announcement)
        self.assertEqual(self.listener.directory.drops["conflicting-content"], 1)

    def test_truncated_oversized_random(self) -> None:
        """Truncated, oversized and random datagrams are dropped and
        counted; nothing raises."""
        data = self.announcement.to_bytes()
        self.feed(data[:-1])
        self.feed(data[:20])
        self.feed(data + bytes(1200))
        rnd = random.Random(4)
        for _ in range(200):
            self.feed(bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 300))))
        self.feed(b"CRDS\x01\x01" + bytes(rnd.getrandbits(8) for _ in range(200)))
        self.assert_unchanged()
        self.assertEqual(sum(self.listener.drops.values()), 204)
        self.assertEqual(self.listener.drops["oversized"], 1)

    def test_known_room_renewal_during_flood(self) -> None:
        """Through the protocol: a flood of forged announcements from
        thousands of sources does not keep a known room's new announcement
        out of the directory or from being reported (issue 13; the
        decision is tested in test_discovery_node)."""
        self.feed(self.announcement.to_bytes())
        renewal = Announcement.sign(
            KEY, "lobby", ["192.0.2.20:7000"], counter=6, lifetime=30
        )
        for i in range(3000):
            self.listener.datagramReceived(forged(i), loopback_source(i))
            if i == 1500:
                self.feed(renewal.to_bytes())
        self.assertEqual(
            [(c.outcome, c.entry.announcement) for c in self.changes],
            [(Outcome.ADDED, self.announcement), (Outcome.UPDATED, renewal)],
        )
        # 200 checks a second for unknown keys: the first announcement took one.
        self.assertEqual(self.listener.drops["signature-budget"], 3000 - 199)

    def test_unknown_version_dropped(self) -> None:
        """A future version is ignored and counted."""
        data = bytearray(self.announcement.to_bytes())
        data[4] = 2
        self.feed(bytes(data))
        self.assert_unchanged()
        self.assertEqual(self.listener.drops["unsupported-version"], 1)

    def test_goodbye_removes(self) -> None:
        """A signed goodbye removes the room and is reported."""
        self.feed(self.announcement.to_bytes())
        self.feed(Goodbye.sign(KEY, "lobby", 6).to_bytes())
        self.assertEqual(
            [c.outcome for c in self.changes], [Outcome.ADDED, Outcome.REMOVED]
        )
        self.assertEqual(self.listener.directory.entries(0.0), [])

    def test_forged_goodbye_ignored(self) -> None:
        """A goodbye signed by another key does not remove the room."""
        self.feed(self.announcement.to_bytes())
        forged = Goodbye.sign(OTHER_KEY, "lobby", 6)
        forged = attrs.evolve(forged, q=self.announcement.q)
        self.feed(forged.to_bytes())
        self.assertEqual(len(self.listener.directory.entries(0.0)), 1)
        self.assertEqual(self.listener.drops["bad-signature"], 1)

    def test_expiry_sweep(self) -> None:
        """Rooms expire on the periodic sweep and are reported."""
        self.feed(self.announcement.to_bytes())
        self.clock.advance(29)
        self.assertEqual(len(self.changes), 1)
        self.clock.advance(1)
        self.assertEqual(
            [c.outcome for c in self.changes], [Outcome.ADDED, Outcome.EXPIRED]
        )

    def test_ask_sends_padded_query(self) -> None:
        """ask() sends a padded wildcard query from the query socket with
        the asked TTL."""
        query = self.listener.ask(ttl=3)
        [(data, address, ttl)] = self.query_t.written
        self.assertEqual((address, ttl, len(data)), ((GROUP, PORT), 3, 400))
        self.assertEqual(parse_datagram(data), query)
        self.assertEqual(self.group_t.written, [])

    def test_answers_fill_directory(self) -> None:
        """Answers to ask() go into the directory for their capped life."""
        query = self.listener.ask()
        answer = Answer(query.query_id, 10, self.announcement)
        self.listener.query_protocol.datagramReceived(answer.to_bytes(), HOST_ADDRESS)
        entry = self.listener.directory.lookup(self.announcement.q, "lobby", 0.0)
        assert entry is not None
        self.assertEqual(entry.expires_at, 10.0)

    def test_stop_leaves_no_timers(self) -> None:
        """Stopping the listener cancels the sweep and searches; the search
        Deferred fires with a cancelled result."""
        d = self.listener.search(room="lobby")
        self.group_t.stopListening()
        self.query_t.stopListening()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.successResultOf(d).state, SearchState.CANCELLED)


class SearchOverFakeNetworkTests(SynchronousTestCase):
    """Expanding-ring search across fake routed segments."""

    RINGS = (Ring(1, 0.5), Ring(2, 0.5), Ring(4, 0.5))

    def run_until(
        self, clock: Clock, network: FakeNetwork, d: Deferred, limit: int = 400
    ) -> Any:
        """Advance time in 10 ms steps, delivering datagrams, until ``d``
        fires."""
        for _ in range(limit):
            network.flush()
            if d.called:
                break
            clock.advance(0.01)
        return self.successResultOf(d)

    def test_two_routers_away(self) -> None:
        """A host behind two routers is not reached by TTL 1 or 2 and is
        found by the TTL 4 ring, with the announcement verbatim."""
        clock = Clock()
        network = FakeNetwork()
        host, host_t = make_host(clock, network, segment=2)
        clock.advance(5)  # the host's announcements (TTL 8) reach everyone
        listener, group_t, query_t = make_listener(clock, network, segment=0)
        d = listener.search(room="lobby", rings=self.RINGS)
        result = self.run_until(clock, network, d)
        self.assertEqual(result.state, SearchState.FOUND)
        self.assertEqual(result.ttl, 4)
        self.assertEqual(result.rings_tried, 3)
        self.assertEqual([ttl for _, _, ttl in query_t.written], [1, 2, 4])
        self.assertEqual(
            result.announcement.to_bytes(), host.announcements[0].to_bytes()
        )
        host_t.stopListening()
        group_t.stopListening()
        query_t.stopListening()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_same_segment_first_ring(self) -> None:
        """A host on the same segment is found by the first ring."""
        clock = Clock()
        network = FakeNetwork()
        make_host(clock, network, segment=0)
        listener, _, _ = make_listener(clock, network, segment=0)
        result = self.run_until(
            clock, network, listener.search(room="lobby", rings=self.RINGS)
        )
        self.assertEqual((result.state, result.ttl), (SearchState.FOUND, 1))

    def test_by_fingerprint(self) -> None:
        """A search by short fingerprint and name finds the host."""
        clock = Clock()
        network = FakeNetwork()
        host, _ = make_host(clock, network, segment=1)
        listener, _, _ = make_listener(clock, network, segment=0)
        prefix = bytes.fromhex(short_fingerprint(host.announcements[0].q))
        result = self.run_until(
            clock, network, listener.search("lobby", prefix, self.RINGS)
        )
        self.assertEqual((result.state, result.ttl), (SearchState.FOUND, 2))

    def test_not_found(self) -> None:
        """A room nobody holds is reported not found after the last ring."""
        clock = Clock()
        network = FakeNetwork()
        make_host(clock, network, segment=0)
        listener, _, query_t = make_listener(clock, network, segment=0)
        result = self.run_until(
            clock, network, listener.search(room="nowhere", rings=self.RINGS)
        )
        self.assertEqual(result.state, SearchState.NOT_FOUND)
        self.assertEqual(len(query_t.written), 3)

    def test_cancel_search(self) -> None:
        """Cancelling the Deferred stops the search and its timers."""
        clock = Clock()
        listener, group_t, query_t = make_listener(clock)
        d = listener.search(room="lobby")
        d.cancel()
        self.assertEqual(self.successResultOf(d).state, SearchState.CANCELLED)
        clock.advance(100)
        self.assertEqual(len(query_t.written), 1)

    def test_participant_relays_verbatim(self) -> None:
        """A participant holding the host's announcement answers for it,
        byte for byte, after the host has gone quiet."""
        clock = Clock()
        network = FakeNetwork()
        host, host_t = make_host(clock, network, segment=5)
        original = host.announcements[0]
        host_t.stopListening()  # the host is out of reach (no goodbye)
        participant, _, _ = make_listener(
            clock, network, segment=1, address="127.0.0.3"
        )
        participant.hold(original)
        searcher, _, _ = make_listener(clock, network, segment=0, address="127.0.0.4")
        result = self.run_until(
            clock, network, searcher.search(room="lobby", rings=self.RINGS)
        )
        self.assertEqual((result.state, result.ttl), (SearchState.FOUND, 2))
        self.assertEqual(result.announcement.to_bytes(), original.to_bytes())
        relayed = [d for d, src, dst in network.delivered if src == ("127.0.0.3", PORT)]
        self.assertEqual(len(relayed), 1)
        self.assertIn(original.to_bytes(), relayed[0])

    def test_participant_relays_newest(self) -> None:
        """A held room that moves is relayed with its newer announcement;
        after its goodbye the participant stops relaying it."""
        clock = Clock()
        participant, group_t, _ = make_listener(clock)
        old = Announcement.sign(KEY, "lobby", ["192.0.2.1:1"], counter=1, lifetime=60)
        new = Announcement.sign(KEY, "lobby", ["192.0.2.2:2"], counter=2, lifetime=60)
        participant.hold(old)
        participant.datagramReceived(new.to_bytes(), HOST_ADDRESS)
        self.assertEqual(participant.responder.held(), [new])
        participant.datagramReceived(
            Goodbye.sign(KEY, "lobby", 3).to_bytes(), HOST_ADDRESS
        )
        self.assertEqual(participant.responder.held(), [])

    def test_release(self) -> None:
        """release() stops relaying a held room."""
        participant, _, _ = make_listener(Clock())
        a = Announcement.sign(KEY, "lobby", ["192.0.2.1:1"], counter=1, lifetime=60)
        participant.hold(a)
        participant.release(a.q, "lobby")
        self.assertEqual(participant.responder.held(), [])

    def test_listener_ignores_own_query(self) -> None:
        """A participant does not answer its own queries."""
        clock = Clock()
        network = FakeNetwork()
        participant, group_t, query_t = make_listener(clock, network)
        participant.hold(
            Announcement.sign(KEY, "lobby", ["192.0.2.1:1"], counter=1, lifetime=60)
        )
        participant.ask(room="lobby")
        network.flush()
        clock.advance(1)
        network.flush()
        self.assertEqual(group_t.written, [])
        self.assertEqual(participant.stats["own-query"], 1)

    def test_searcher_gets_newest_from_directory(self) -> None:
        """If a relay answers with an older announcement while the directory
        already holds a newer one, the search reports the newer one."""
        clock = Clock()
        listener, _, query_t = make_listener(clock)
        new = Announcement.sign(KEY, "lobby", ["192.0.2.2:2"], counter=2, lifetime=60)
        old = Announcement.sign(KEY, "lobby", ["192.0.2.1:1"], counter=1, lifetime=60)
        listener.datagramReceived(new.to_bytes(), HOST_ADDRESS)
        d = listener.search(room="lobby")
        query_id = parse_datagram(query_t.written[0][0]).query_id
        listener.query_protocol.datagramReceived(
            Answer(query_id, 60, old).to_bytes(), ("127.0.0.5", PORT)
        )
        self.assertEqual(self.successResultOf(d).announcement, new)
        clock.advance(10)


def free_udp_port() -> int:
    """A UDP port number that is free right now on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackTests(TestCase):
    """Real sockets on loopback: multicast out of 127.0.0.1 only."""

    timeout = 20

    @inlineCallbacks
    def test_host_and_listener(self) -> Any:
        """A listener hears a host's announcement, finds it with a search,
        and sees it leave when the host service stops."""
        from twisted.internet import reactor

        port = free_udp_port()
        group = f"239.255.{random.randrange(100, 250)}.{random.randrange(1, 250)}"
        added: Deferred[DirectoryChange] = Deferred()
        removed: Deferred[DirectoryChange] = Deferred()

        def on_change(change: DirectoryChange) -> None:
            if change.outcome is Outcome.ADDED and not added.called:
                added.callback(change)
            elif change.outcome is Outcome.REMOVED and not removed.called:
                removed.callback(change)

        listener = ListenerProtocol(
            reactor, group, port, "127.0.0.1", on_change=on_change
        )
        listener_service = DiscoveryService(reactor, listener)
        listener_service.startService()
        self.addCleanup(
            lambda: listener_service.running and listener_service.stopService()
        )
        yield listener.ready
        self.assertEqual(listener.transport.getOutgoingInterface(), "127.0.0.1")

        host = HostProtocol(
            reactor,
            group,
            port,
            "127.0.0.1",
            KEY,
            CounterSource(),
            ["lobby"],
            ["127.0.0.1:6697"],
            ttl=1,
        )
        host_service = DiscoveryService(reactor, host)
        host_service.startService()
        self.addCleanup(lambda: host_service.running and host_service.stopService())
        yield host.ready

        change = yield added
        self.assertEqual(change.entry.announcement.room, "lobby")

        result = yield listener.search(room="lobby", rings=[Ring(1, 5.0)])
        self.assertEqual((result.state, result.ttl), (SearchState.FOUND, 1))
        self.assertEqual(
            result.announcement.to_bytes(), host.announcements[0].to_bytes()
        )
        self.assertGreaterEqual(host.stats["answers-sent"], 1)

        yield host_service.stopService()
        change = yield removed
        self.assertEqual(change.entry.announcement.room, "lobby")
        yield listener_service.stopService()
        self.assertEqual(dict(listener.drops), {})


class HostRoomChangeTests(SynchronousTestCase):
    """Rooms opened and removed while the host runs."""

    def datagrams(self, transport):
        return [parse_datagram(data) for data, _, _ in transport.written]

    def test_starts_with_no_rooms(self) -> None:
        """A host with open rooms may start with none and add one later."""
        clock = Clock()
        counter = CounterSource()
        host, transport = make_host(clock, rooms=(), counter=counter)
        self.assertEqual(host.announcements, ())
        transport.written.clear()
        host.add_room("newroom")
        (announcement,) = self.datagrams(transport)
        self.assertIsInstance(announcement, Announcement)
        self.assertEqual(announcement.room, "newroom")
        self.assertEqual([a.room for a in host.announcements], ["newroom"])
        clock.advance(1)
        self.assertEqual([d.room for d in self.datagrams(transport)][-1], "newroom")

    def test_add_then_remove(self) -> None:
        clock = Clock()
        host, transport = make_host(clock, rooms=("lobby",))
        host.add_room("lobby")  # already announced: nothing new
        self.assertEqual(len(host.announcements), 1)
        host.add_room(HostedRoom("dev"))
        transport.written.clear()
        host.remove_room("dev")
        [goodbye] = self.datagrams(transport)
        self.assertIsInstance(goodbye, Goodbye)
        self.assertEqual(goodbye.room, "dev")
        self.assertGreater(goodbye.counter, max(a.counter for a in host.announcements))
        self.assertEqual([a.room for a in host.announcements], ["lobby"])
        host.remove_room("dev")
        self.assertEqual(len(transport.written), 1)


def flip_last_bit(data: bytes) -> bytes:
    """``data`` with the last bit of its signature flipped: never valid."""
    return data[:-1] + bytes([data[-1] ^ 1])
