"""The client's multicast delivery (issue 10): chatroom/client/fanout.py.

The real L{RoomSession}, L{RoomClientProtocol} and L{MulticastDelivery}
against the fake fan-out host of C{tests/fanout_fakes.py}: TLS over iosim,
datagrams sealed and signed for real and carried by a fake group where the
test decides what is lost, one C{task.Clock}.  One test uses real sockets
on loopback (multicast out of and into 127.0.0.1 only).
"""

from __future__ import annotations

import random
import socket

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatroom.client.fanout import (
    CAPABILITY,
    IP_MULTICAST_ALL,
    FanoutOptions,
    FanoutSocket,
    wanted_caps,
)
from chatroom.client.main import build_parser, fanout_options
from chatroom.client.protocol import CLIENT_CAPS, RoomClientProtocol
from chatroom.client.reconnect import RoomTarget
from chatroom.client.session import RoomSession
from chatroom.core.errors import ParseError
from chatroom.core.fanout import Datagram, EpochKey, RoomIdentity, open_datagram

from .fanout_fakes import EPOCH_1_KEY, GROUP, PORT, Q, FanoutNetwork
from .memory_network import Seen, new_session

TARGET = RoomTarget(Q, "lobby", ("127.0.0.1:6697",), 1)


class CapabilityTests(SynchronousTestCase):
    """The fan-out capability is asked for only with message-tags,
    server-time and echo-message."""

    def negotiate(self, offered):
        proto = RoomClientProtocol("alice", wanted_caps=CLIENT_CAPS + (CAPABILITY,))
        transport = StringTransport()
        proto.makeConnection(transport)
        transport.clear()
        proto.dataReceived(b":srv CAP * LS :" + " ".join(offered).encode() + b"\r\n")
        return transport.value().decode()

    def test_requested_with_its_prerequisites(self):
        sent = self.negotiate(CLIENT_CAPS + (CAPABILITY,))
        self.assertIn("CAP REQ :", sent)
        self.assertIn(CAPABILITY, sent)

    def test_not_requested_without_echo_message(self):
        offered = tuple(c for c in CLIENT_CAPS if c != "echo-message")
        sent = self.negotiate(offered + (CAPABILITY,))
        self.assertIn("CAP REQ :message-tags", sent)
        self.assertNotIn(CAPABILITY, sent)

    def test_wanted_caps(self):
        self.assertEqual(wanted_caps(["server-time", CAPABILITY]), ["server-time"])
        self.assertEqual(
            wanted_caps(["message-tags", "server-time", "echo-message", CAPABILITY]),
            ["message-tags", "server-time", "echo-message", CAPABILITY],
        )

    def test_stock_protocol_does_not_ask(self):
        """Without a session's fan-out options nothing asks for it."""
        self.assertNotIn(CAPABILITY, CLIENT_CAPS)


class OptionTests(SynchronousTestCase):
    def test_interface_defaults_to_discovery_interface(self):
        args = build_parser().parse_args(
            ["join", "lobby", "--discovery-interface", "10.1.2.3"]
        )
        self.assertEqual(fanout_options(args).interface, "10.1.2.3")

    def test_explicit_interface(self):
        args = build_parser().parse_args(
            ["tail", "-f", "lobby", "--fanout-interface", "10.9.9.9"]
        )
        self.assertEqual(fanout_options(args).interface, "10.9.9.9")

    def test_no_multicast(self):
        args = build_parser().parse_args(["join", "lobby", "--no-multicast"])
        self.assertIsNone(fanout_options(args))

    def test_default_is_loopback(self):
        args = build_parser().parse_args(["join", "lobby"])
        self.assertEqual(fanout_options(args).interface, "127.0.0.1")

    def test_which_commands_take_multicast(self):
        """join and tail --follow ask for multicast delivery; say and a
        plain tail, which leave at once, do not."""
        import io

        from chatroom.client import errors, main

        made = []

        class Recorder:
            def __init__(self, reactor, target, nick, fanout=None, **kwargs):
                made.append(fanout)

            def connect(self):
                return defer.fail(
                    errors.HostUnreachable("#lobby", ("127.0.0.1:1",), "test")
                )

        self.patch(main, "RoomSession", Recorder)
        # The target as resolving --connect/--key would give it, without
        # the TLS handshake that reads the server's key.
        self.patch(main, "resolve", lambda reactor, args, finder: defer.succeed(TARGET))
        direct = [
            "--connect",
            "127.0.0.1:1",
            "--key",
            Q.hex(),
            "--fanout-interface",
            "10.0.0.7",
            "--data-dir",
            self.mktemp(),
        ]
        for argv in (
            ["say", "lobby", "hi"],
            ["tail", "lobby"],
            ["tail", "-f", "lobby"],
            ["join", "lobby"],
        ):
            d = main.run(None, argv + direct, io.StringIO(), io.StringIO())
            self.failureResultOf(d, SystemExit)
        self.assertEqual(
            [None if f is None else f.interface for f in made],
            [None, None, "10.0.0.7", "10.0.0.7"],
        )


class FanoutSessionMixin:
    """Sessions on a L{FanoutNetwork}."""

    def setUp(self):
        self.net = FanoutNetwork()
        self.host = self.net.host
        self.air = self.net.air
        self.addCleanup(self.host.stop)

    def session(self, nick="alice", fanout=True, seed=1):
        options = FanoutOptions(
            listen=self.air.listen, random=random.Random(seed).random
        )
        session, seen = new_session(
            self.net, TARGET, nick, fanout=options if fanout else None
        )
        d = session.connect()
        self.net.settle()
        self.assertIs(self.successResultOf(d), session)
        self.addCleanup(self.close, session)
        return session, seen

    def close(self, session):
        d = session.close()
        self.net.settle()
        self.successResultOf(d)

    def on_multicast(self, nick="alice", seed=1):
        """A session that took multicast delivery."""
        session, seen = self.session(nick, seed=seed)
        self.net.advance(0.5)  # the first heartbeat comes after 0.25 s
        self.assertEqual(session.fanout.mode, "multicast")
        return session, seen

    def conn(self, nick):
        """The host's end of C{nick}'s current connection."""
        return [c for c in self.host.members if c.nick == nick][-1]

    def assert_exactly_once_in_order(self, seen, posted):
        """Every posted message shown once, in the host's order, and every
        numbered event shown once with no sequence number twice."""
        seqs = [e.seq for e in seen.events if e.seq is not None]
        self.assertEqual(seqs, sorted(set(seqs)))
        self.assertEqual(seqs, list(range(seqs[0], seqs[-1] + 1)))
        shown = [(e.seq, e.text) for e in seen.events if e.kind == "message"]
        self.assertEqual(shown, posted)


class _PropertyCase(FanoutSessionMixin, SynchronousTestCase):
    """A fresh network per hypothesis example."""

    def runTest(self):
        """Not run by itself."""


class SwitchTests(FanoutSessionMixin, SynchronousTestCase):
    def test_key_joins_group_on_explicit_interface(self):
        session, seen = self.session()
        [sock] = self.air.sockets
        self.assertEqual(sock.groups, [(GROUP, "127.0.0.1")])
        self.assertEqual(sock.outgoing_interface, "127.0.0.1")
        self.assertEqual(sock.address[1], PORT)
        self.assertIn((socket.IPPROTO_IP, IP_MULTICAST_ALL, 0), sock.handle.options)
        self.assertEqual(session.fanout.mode, "tls")

    def test_start_after_one_valid_datagram(self):
        session, seen = self.session()
        self.assertEqual(self.host.requests, [])
        self.net.advance(0.3)
        self.assertEqual(
            [(nick, r.verb) for nick, r in self.host.requests], [("alice", "START")]
        )
        self.assertEqual(session.fanout.mode, "multicast")
        self.assertIn(
            "Receiving #lobby by multicast (group 239.255.67.70"
            " port 47668 on 127.0.0.1).",
            seen.status,
        )

    def test_events_by_multicast_only(self):
        session, seen = self.on_multicast()
        conn = self.conn("alice")
        before = list(conn.tls_events)
        accepted = session.fanout.receiver.accepted
        posted = [(self.host.say("bob", "hi %d" % i), "hi %d" % i) for i in range(5)]
        self.net.settle()
        self.assertEqual(conn.tls_events, before)
        self.assertGreater(session.fanout.receiver.accepted, accepted)
        self.assert_exactly_once_in_order(seen, posted)
        [sock] = self.air.sockets
        self.assertEqual(sock.written, [])

    def test_own_messages_echoed_once(self):
        session, seen = self.on_multicast()
        event = session.say("mine")
        self.net.settle()
        result = self.successResultOf(event)
        self.assertEqual((result.text, result.own), ("mine", True))
        self.assertEqual([e.text for e in seen.events if e.kind == "message"], ["mine"])

    def test_stock_session_gets_no_key(self):
        session, seen = self.session(fanout=False)
        self.net.advance(1)
        self.assertIsNone(session.fanout)
        self.assertEqual(self.air.sockets, [])
        self.assertNotIn(CAPABILITY, self.conn("alice").caps)
        posted = [(self.host.say("bob", "plain"), "plain")]
        self.net.settle()
        self.assert_exactly_once_in_order(seen, posted)

    def test_not_asked_without_a_multicast_reactor(self):
        """A reactor that cannot listen to a group (here a bare clock)
        never asks for the capability."""
        seen = Seen()
        session = RoomSession(
            self.net.clock,
            TARGET,
            "alice",
            on_event=seen.on_event,
            endpoint_for=self.net.endpoint_for,
        )
        self.assertFalse(session.fanout.available)
        d = session.connect()
        self.net.settle()
        self.successResultOf(d)
        self.addCleanup(self.close, session)
        self.assertNotIn(CAPABILITY, self.conn("alice").caps)
        self.assertEqual(self.host.sender.members, ())

    def test_tls_and_multicast_members_see_the_same(self):
        alice, alice_seen = self.on_multicast("alice")
        carol, carol_seen = self.session("carol", fanout=False)
        posted = [(self.host.say("bob", "m%d" % i), "m%d" % i) for i in range(20)]
        self.net.advance(1)
        self.assert_exactly_once_in_order(alice_seen, posted)
        self.assert_exactly_once_in_order(carol_seen, posted)


class LossTests(FanoutSessionMixin, SynchronousTestCase):
    """Issue 10, "Loss": every event reaches the member exactly once and in
    order, with loss injected in the test's group."""

    def lost_events(self):
        """The sequence numbers of the events in lost datagrams (the host
        packs the events that waited for its pacing together)."""
        identity = RoomIdentity(Q, "lobby")
        seqs = []
        for index in self.air.lost:
            opened = open_datagram(
                Datagram.from_bytes(self.air.sent[index]),
                identity,
                EpochKey(1, EPOCH_1_KEY),
            )
            seqs += range(opened.seq, opened.seq + len(opened.lines))
        return sorted(seqs)

    def post_turns(self, count, per_turn=1, gap=0.02):
        posted = []
        for i in range(count):
            for j in range(per_turn):
                text = "event %d.%d" % (i, j)
                posted.append((self.host.say("bob", text), text))
            self.net.advance(gap)
        return posted

    def test_ten_percent_random_loss(self):
        session, seen = self.on_multicast()
        rng = random.Random(2026)
        self.air.lose = lambda index, data: rng.random() < 0.1
        posted = self.post_turns(300, per_turn=2)
        self.net.advance(5)
        self.assertGreater(len(self.air.lost), 15)
        self.assert_exactly_once_in_order(seen, posted)
        repairs = [r for _, r in self.host.requests if r.verb == "REPAIR"]
        self.assertTrue(repairs)
        self.assertEqual(session.fanout.mode, "multicast")

    def test_burst_of_fifty_lost(self):
        session, seen = self.on_multicast()
        first = len(self.air.sent) + 20
        burst = range(first, first + 50)
        self.air.lose = lambda index, data: index in burst
        posted = self.post_turns(120, gap=0.001)
        self.net.advance(5)
        self.assertEqual(self.air.lost, list(burst))
        self.assertGreaterEqual(len(self.lost_events()), 50)
        self.assert_exactly_once_in_order(seen, posted)
        self.assertEqual(session.fanout.mode, "multicast")
        # Asked over TLS (each number after its own 50-200 ms wait), each
        # lost event exactly once, nothing else.
        lost = self.lost_events()
        asked = sorted(
            seq
            for _, r in self.host.requests
            if r.verb == "REPAIR"
            for a, b in r.ranges
            for seq in range(a, b + 1)
        )
        self.assertEqual(asked, lost)

    def test_burst_lost_by_many_is_sent_again_on_the_group(self):
        """Three members lose the same burst: the host sends it once more
        to the group (NACK aggregation) and each shows it once."""
        sessions = [
            self.on_multicast(nick, seed=i)
            for i, nick in enumerate(("alice", "bob", "carol"))
        ]
        first = len(self.air.sent) + 5
        burst = range(first, first + 50)
        self.air.lose = lambda index, data: index in burst
        posted = self.post_turns(80, gap=0.001)
        self.net.advance(5)
        self.assertGreater(self.host.sender.policy.counts["remulticast"], 0)
        for session, seen in sessions:
            self.assert_exactly_once_in_order(seen, posted)
            self.assertEqual(session.fanout.mode, "multicast")

    def test_gap_over_1000_caught_up_with_chathistory(self):
        session, seen = self.on_multicast()
        self.air.cut = True
        posted = [(self.host.say("bob", "m%d" % i), "m%d" % i) for i in range(1200)]
        self.net.advance(1)
        self.air.cut = False
        posted.append((self.host.say("bob", "last"), "last"))
        self.net.advance(3)
        self.assert_exactly_once_in_order(seen, posted)
        after = [
            p
            for nick, p in self.host.history_requests
            if nick == "alice" and p[0] == "AFTER"
        ]
        self.assertGreaterEqual(len(after), 2)
        self.assertEqual(session.fanout.mode, "multicast")

    def test_tail_burst_noticed_by_heartbeat(self):
        session, seen = self.on_multicast()
        first = len(self.air.sent) + 10
        self.air.lose = lambda index, data: index >= first
        posted = self.post_turns(60, gap=0.001)
        self.air.lose = lambda index, data: False
        self.net.advance(1)
        self.assert_exactly_once_in_order(seen, posted)
        self.assertEqual(session.fanout.mode, "multicast")


class LossPropertyTests(SynchronousTestCase):
    """Whatever the group loses, duplicates or reorders, and whether
    datagrams overtake TLS or not, a multicast member shows every event
    once, in the host's order."""

    @settings(max_examples=40, deadline=None)
    @given(
        turns=st.lists(st.integers(1, 6), min_size=1, max_size=40),
        loss=st.sampled_from([0.0, 0.1, 0.3, 0.6]),
        duplicate=st.sampled_from([0.0, 0.1, 0.5]),
        reorder=st.booleans(),
        air_first=st.booleans(),
        stall=st.tuples(st.integers(0, 4), st.integers(0, 20)),
        seed=st.integers(0, 2**32 - 1),
    )
    @example(
        turns=[3] * 20,
        loss=0.3,
        duplicate=0.0,
        reorder=False,
        air_first=False,
        stall=(0, 10),
        seed=5,
    )
    def test_exactly_once_in_order(
        self, turns, loss, duplicate, reorder, air_first, stall, seed
    ):
        case = _PropertyCase()
        case.setUp()
        try:
            # Events flow from the join on: the switch to multicast, and
            # datagrams overtaking TLS before it, are part of every case.
            session, seen = case.session()
            rng = random.Random(seed)
            case.air.lose = lambda index, data: rng.random() < loss
            case.air.duplicate = lambda index, data: rng.random() < duplicate
            case.air.reorder = random.Random(seed) if reorder else None
            case.net.air_first = air_first
            posted = []
            for turn, count in enumerate(turns):
                # TLS stalls for a while (from turn stall[0], for stall[1]
                # turns); datagrams keep coming.
                case.net.tls_stalled = stall[0] <= turn < sum(stall)
                for i in range(count):
                    text = "t%d.%d" % (turn, i)
                    posted.append((case.host.say("bob", text), text))
                case.net.advance(rng.choice([0.001, 0.01, 0.1]))
            case.net.tls_stalled = False
            case.net.advance(8, step=0.05)
            case.assert_exactly_once_in_order(seen, posted)
            if loss == 0.0:
                self.assertEqual(session.fanout.mode, "multicast")
        finally:
            case.doCleanups()


class FallbackTests(FanoutSessionMixin, SynchronousTestCase):
    def test_datagrams_stop_then_tls_and_nothing_lost(self):
        session, seen = self.on_multicast()
        posted = [
            (self.host.say("bob", "before %d" % i), "before %d" % i) for i in range(3)
        ]
        self.net.advance(1)
        self.air.cut = True
        for i in range(10):
            posted.append((self.host.say("bob", "lost %d" % i), "lost %d" % i))
            self.net.advance(0.4)
        self.assertEqual(session.fanout.mode, "multicast")
        self.net.advance(5)
        verbs = [r.verb for _, r in self.host.requests]
        self.assertIn("STOP", verbs)
        self.assertEqual(session.fanout.mode, "tls")
        self.assertIn(
            "Multicast stopped for #lobby (no datagram for 5 s); back to TLS delivery.",
            seen.status,
        )
        posted.append((self.host.say("bob", "after"), "after"))
        self.net.advance(1)
        self.assert_exactly_once_in_order(seen, posted)

    def test_no_multicast_route(self):
        self.air.cut = True
        session, seen = self.session()
        posted = [(self.host.say("bob", "over tls"), "over tls")]
        self.net.advance(6)
        self.assertEqual(self.host.requests, [])
        self.assertEqual(session.fanout.mode, "tls")
        self.assertTrue(
            any(
                s.startswith(
                    "No multicast datagram for #lobby arrived on 127.0.0.1 within 5 s"
                )
                for s in seen.status
            ),
            seen.status,
        )
        self.assert_exactly_once_in_order(seen, posted)

    def test_multicast_again_after_backoff(self):
        session, seen = self.on_multicast()
        self.air.cut = True
        self.net.advance(6, step=0.5)
        self.assertEqual(session.fanout.mode, "tls")
        self.air.cut = False
        self.net.advance(40, step=0.5)
        self.assertEqual(session.fanout.mode, "multicast")
        self.assertEqual(
            [r.verb for _, r in self.host.requests], ["START", "STOP", "START"]
        )


class RotationTests(FanoutSessionMixin, SynchronousTestCase):
    def test_departed_member_reads_nothing_after_rotation(self):
        alice, alice_seen = self.on_multicast("alice", seed=1)
        bob, bob_seen = self.on_multicast("bob", seed=2)
        old_receiver = bob.fanout.receiver
        old_key = old_receiver._keys[1].key
        posted = [(self.host.say("dave", "before"), "before")]
        self.net.settle()
        sent_before = len(self.air.sent)
        self.close(bob)
        posted += [
            (self.host.say("dave", "secret %d" % i), "secret %d" % i) for i in range(5)
        ]
        self.net.advance(1)
        # Alice took the new key and kept receiving by multicast.
        self.assertEqual(alice.fanout.receiver.epochs[-1], 2)
        self.assertEqual(alice.fanout.mode, "multicast")
        self.assertFalse(any("stopped" in s for s in alice_seen.status))
        self.assert_exactly_once_in_order(alice_seen, posted)
        # Bob's old key opens nothing sent after he left, and his old
        # receiver, fed every later datagram, shows nothing.
        after = self.air.sent[sent_before:]
        self.assertTrue(after)
        identity = RoomIdentity(Q, "lobby")
        for data in after:
            datagram = Datagram.from_bytes(data)
            self.assertEqual(datagram.epoch, 2)
            with self.assertRaises(ParseError):
                datagram.open(identity, EpochKey(2, old_key.key))
        accepted = old_receiver.accepted
        now = self.net.clock.seconds()
        actions = []
        for data in after:
            actions += old_receiver.datagram_received(data, now)
        actions += old_receiver.tick(now + 3)
        self.assertEqual([a for a in actions if type(a).__name__ == "Deliver"], [])
        self.assertEqual(old_receiver.accepted, accepted)


class ReconnectTests(FanoutSessionMixin, SynchronousTestCase):
    def test_multicast_again_after_reconnect(self):
        session, seen = self.on_multicast()
        self.net.pumps[0].serverIO.loseConnection()
        self.net.settle()
        self.assertEqual(session.fanout.mode, "tls")
        posted = [(self.host.say("bob", "while away"), "while away")]
        self.net.advance(2)
        self.assertTrue(session.joined)
        self.net.advance(0.5)
        self.assertEqual(session.fanout.mode, "multicast")
        posted.append((self.host.say("bob", "back"), "back"))
        self.net.advance(0.5)
        self.assert_exactly_once_in_order(seen, posted)


def free_udp_port():
    """A UDP port nobody uses right now on this machine."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind(("", 0))
        return probe.getsockname()[1]
    finally:
        probe.close()


class _Sender(DatagramProtocol):
    def startProtocol(self):
        self.ready = defer.maybeDeferred(
            self.transport.setOutgoingInterface, "127.0.0.1"
        )


class LoopbackSocketTests(TestCase):
    """Real sockets: multicast out of and into 127.0.0.1 only."""

    timeout = 20

    @defer.inlineCallbacks
    def test_listener_receives_a_datagram_sent_to_the_group(self):
        from twisted.internet import reactor

        port = free_udp_port()
        group = "239.255.%d.%d" % (random.randrange(100, 250), random.randrange(1, 250))
        received = defer.Deferred()
        sock = FanoutSocket(
            group, "127.0.0.1", lambda data: received.called or received.callback(data)
        )
        listening = reactor.listenMulticast(
            port, sock, interface="", listenMultiple=True
        )
        self.addCleanup(listening.stopListening)
        joined = yield sock.ready
        self.assertTrue(joined)
        self.assertEqual(listening.getOutgoingInterface(), "127.0.0.1")
        self.assertEqual(
            listening.getHandle().getsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL), 0
        )

        sender = _Sender()
        sending = reactor.listenMulticast(0, sender, interface="127.0.0.1")
        self.addCleanup(sending.stopListening)
        yield sender.ready
        sending.setTTL(1)
        sending.setLoopbackMode(True)
        sending.write(b"CRFO hello", (group, port))
        data = yield received
        self.assertEqual(data, b"CRFO hello")
        self.assertEqual(sock.received, 1)


class OvertakingTests(SynchronousTestCase):
    """A datagram may arrive before the TLS lines of earlier events."""

    def test_datagram_overtaking_tls_loses_nothing(self):
        """TLS has shown up to 9; the datagram of event 12 arrives before
        the TLS lines of 10 and 11 (a TCP retransmission on the member's
        link): 10 and 11 must still be shown, in order, before 12."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (
            Ed25519PrivateKey,
        )

        from chatroom.core.fanout import KIND_DATA, KeyGrant, encode_events, seal
        from chatroom.core.fanout_receiver import FanoutReceiver

        key = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
        identity = RoomIdentity(Q, "lobby")
        epoch = EpochKey(1, bytes(range(32)))
        receiver = FanoutReceiver(
            identity, KeyGrant("lobby", epoch, GROUP, PORT), 10, 0.0, lambda: 0.5
        )

        def line(seq):
            return b"@msgid=lobby:%d :bob!~bob@h PRIVMSG #lobby :%d" % (seq, seq)

        actions = receiver.datagram_received(
            seal(key, identity, epoch, KIND_DATA, 0, 12, encode_events([line(12)])), 0.0
        )
        actions += receiver.tls_event(10, line(10), 0.0)
        actions += receiver.tls_event(11, line(11), 0.0)
        actions += receiver.tls_event(12, line(12), 0.0)
        shown = [a.seq for a in actions if type(a).__name__ == "Deliver"]
        self.assertEqual(shown, [10, 11, 12])


class _RecordingProtocol:
    """Stands in for the TLS connection: records what the edge sends and
    fires C{started} on START."""

    def __init__(self):
        self.transport = StringTransport()
        self.sent = []
        self.started = defer.Deferred()

    def send(self, command, *params):
        self.sent.append((command,) + params)
        if params[1:2] == ("START",) and not self.started.called:
            self.started.callback(params)


class LoopbackDeliveryTests(TestCase):
    """The whole member edge on real sockets: a datagram sealed by the
    host key and sent to the group out of 127.0.0.1 makes the client ask
    for multicast delivery."""

    timeout = 20

    @defer.inlineCallbacks
    def test_signed_heartbeat_over_loopback_starts_multicast(self):
        from twisted.internet import reactor

        from chatroom.client.fanout import MulticastDelivery
        from chatroom.core.fanout import KIND_HEARTBEAT, KeyGrant, seal

        from .fanout_fakes import HOST_KEY

        port = free_udp_port()
        group = "239.255.%d.%d" % (random.randrange(100, 250), random.randrange(1, 250))
        status = []
        delivery = MulticastDelivery(
            reactor,
            reactor,
            Q,
            "lobby",
            FanoutOptions(),
            lambda m: None,
            status.append,
            lambda: 41,
        )
        self.addCleanup(delivery.stop)
        proto = _RecordingProtocol()
        epoch = EpochKey(1, EPOCH_1_KEY)
        grant = KeyGrant("lobby", epoch, group, port, 0)
        delivery.caught_up(proto)
        delivery.message_received(proto, _fanout_message(grant.to_params()))
        self.assertEqual(delivery.mode, "tls")
        joined = yield delivery.socket.ready
        self.assertTrue(joined)

        sender = _Sender()
        sending = reactor.listenMulticast(0, sender, interface="127.0.0.1")
        self.addCleanup(sending.stopListening)
        yield sender.ready
        sending.setTTL(1)
        sending.setLoopbackMode(True)
        sending.write(
            seal(HOST_KEY, RoomIdentity(Q, "lobby"), epoch, KIND_HEARTBEAT, 0, 41, b""),
            (group, port),
        )
        params = yield proto.started
        self.assertEqual(params, ("#lobby", "START", "1"))
        self.assertEqual(delivery.mode, "starting")
        self.assertEqual(delivery.receiver.accepted, 1)
        self.assertEqual(dict(delivery.receiver.drops), {})
        yield delivery.stop()


def _fanout_message(params):
    from chatroom.core.ircline import Message

    return Message("FANOUT", tuple(params), prefix="srv")


class BadInputTests(SynchronousTestCase):
    """Bad FANOUT lines and datagrams are counted, never raised, and the
    room stays on TLS."""

    def delivery(self, listen=None, **options):
        from twisted.internet.task import Clock

        from chatroom.client.fanout import MulticastDelivery

        from .fanout_fakes import Air

        self.air = Air()
        self.clock = Clock()
        self.status = []
        delivery = MulticastDelivery(
            None,
            self.clock,
            Q,
            "lobby",
            FanoutOptions(listen=listen or self.air.listen, **options),
            lambda m: None,
            self.status.append,
            lambda: 10,
        )
        self.proto = _RecordingProtocol()
        delivery.caught_up(self.proto)
        self.addCleanup(delivery.stop)
        return delivery

    def key_params(self, **changes):
        params = [
            "#lobby",
            "KEY",
            "1",
            "chacha20-poly1305",
            EPOCH_1_KEY.hex(),
            GROUP,
            str(PORT),
            "0",
        ]
        for index, value in changes.items():
            params[int(index[1:])] = value
        return params

    def test_unknown_algorithm_stays_on_tls(self):
        delivery = self.delivery()
        delivery.message_received(
            self.proto, _fanout_message(self.key_params(p3="aes-256-gcm"))
        )
        self.assertIsNone(delivery.receiver)
        self.assertEqual(self.air.sockets, [])
        self.assertEqual(delivery.drops["unsupported-algorithm"], 1)
        self.assertIn("algorithm this client does not know", self.status[0])

    def test_malformed_lines_counted(self):
        delivery = self.delivery()
        for params in (
            self.key_params(p5="10.0.0.1"),
            self.key_params(p4="zz"),
            ["#lobby", "MODE", "SIDEWAYS", "3"],
            ["#lobby", "REPAIRED", "5-3"],
            ["#lobby", "WHATEVER"],
            ["#lobby"],
        ):
            self.assertTrue(
                delivery.message_received(self.proto, _fanout_message(params))
            )
        self.assertIsNone(delivery.receiver)
        self.assertEqual(sum(delivery.drops.values()), 6)
        self.assertEqual(self.proto.sent, [])

    def test_key_for_another_room_ignored(self):
        delivery = self.delivery()
        delivery.message_received(
            self.proto, _fanout_message(self.key_params(p0="#kitchen"))
        )
        self.assertIsNone(delivery.receiver)
        self.assertEqual(delivery.drops["other-room"], 1)

    def test_garbage_datagrams_counted(self):
        delivery = self.delivery()
        delivery.message_received(self.proto, _fanout_message(self.key_params()))
        for data in (b"", b"CRFO", b"\x00" * 200, bytes(range(256)) * 4, b"x" * 1300):
            self.air.send(data)
        self.air.flush()
        self.assertEqual(delivery.receiver.accepted, 0)
        self.assertEqual(sum(delivery.receiver.drops.values()), 5)
        self.assertEqual(delivery.mode, "tls")
        self.assertEqual(self.proto.sent, [])

    def test_join_failure_told_to_the_user(self):
        from twisted.internet.defer import fail

        from .discovery_fakes import FakeMulticastTransport

        class Refusing(FakeMulticastTransport):
            def joinGroup(self, address, interface=""):
                return fail(OSError(99, "Cannot assign requested address"))

        def listen(port, proto):
            transport = Refusing(address=("0.0.0.0", port))
            transport.attach(proto)
            return transport

        delivery = self.delivery(listen=listen, interface="192.0.2.1")
        delivery.message_received(self.proto, _fanout_message(self.key_params()))
        self.assertEqual(delivery.drops["cannot-join"], 1)
        self.assertTrue(
            self.status[0].startswith(
                "Cannot join multicast group 239.255.67.70 on 192.0.2.1"
            ),
            self.status,
        )
