"""The client's multicast delivery against the real host edge.

The real L{RoomSession} and the real L{RoomHost} with its fan-out edge
(C{chatroom.fanout.HostFanout}) in memory: TLS over the iosim pumps of
L{MemoryNetwork}, datagrams through the fake group of
C{tests/fanout_fakes.py}, one C{task.Clock}.
"""

import random

from twisted.trial.unittest import SynchronousTestCase

from chatroom.client.fanout import FanoutOptions
from chatroom.host import Limits

from .fanout_fakes import GROUP, HOST_KEY, PORT, Q, Air
from .memory_network import MemoryNetwork
from .test_client_fanout import TARGET
from .memory_network import new_session

from chatroom.fanout import HostFanout


class AirSocket:
    """The host's sending socket, into the fake group."""

    group = GROUP
    port = PORT

    def __init__(self, air):
        self.air = air

    def send(self, data):
        self.air.send(data)


class RealHostTests(SynchronousTestCase):
    def setUp(self):
        self.net = MemoryNetwork(limits=Limits(flood_rate=0))
        self.air = Air()
        self.net.host.fanout = HostFanout(
            self.net.host, HOST_KEY, Q, AirSocket(self.air)
        )
        self.addCleanup(self.net.host.fanout.stop)

    def settle(self):
        for _ in range(100):
            self.net.settle()
            if not self.air.flush():
                return
        raise AssertionError("the group did not settle")

    def advance(self, seconds, step=0.01):
        end = self.net.clock.seconds() + seconds
        while self.net.clock.seconds() < end - 1e-9:
            self.net.clock.advance(step)
            self.settle()

    def session(self, nick, fanout=True):
        options = FanoutOptions(listen=self.air.listen, random=random.Random(1).random)
        session, seen = new_session(
            self.net, TARGET, nick, fanout=options if fanout else None
        )
        d = session.connect()
        self.settle()
        self.successResultOf(d)
        self.addCleanup(self.close, session)
        return session, seen

    def close(self, session):
        d = session.close()
        self.settle()
        self.successResultOf(d)

    def messages(self, seen):
        return [e.text for e in seen.events if e.kind == "message"]

    def test_loss_echo_and_a_tls_member(self):
        """20% of the datagrams lost; a multicast member and a TLS member
        both talk and both show every message once, in order."""
        alice, alice_seen = self.session("alice")
        bob, bob_seen = self.session("bob", fanout=False)
        self.advance(0.5)
        self.assertEqual(alice.fanout.mode, "multicast")
        rng = random.Random(3)
        self.air.lose = lambda index, data: rng.random() < 0.2
        texts = []
        for i in range(100):
            said = (bob if i % 3 else alice).say("m%d" % i)
            texts.append("m%d" % i)
            self.advance(0.01)
            self.successResultOf(said)
        self.air.lose = lambda index, data: False
        self.advance(5, step=0.05)
        self.assertTrue(self.air.lost)
        self.assertEqual(self.messages(alice_seen), texts)
        self.assertEqual(self.messages(bob_seen), texts)
        seqs = [e.seq for e in alice_seen.events if e.seq is not None]
        self.assertEqual(seqs, list(range(seqs[0], seqs[-1] + 1)))
        self.assertEqual(alice.fanout.mode, "multicast")

    def test_rotation_then_fallback(self):
        alice, alice_seen = self.session("alice")
        carol, _ = self.session("carol")
        self.advance(0.5)
        self.assertEqual(
            (alice.fanout.mode, carol.fanout.mode), ("multicast", "multicast")
        )
        self.close(carol)
        said = alice.say("after carol")
        self.advance(1)
        self.successResultOf(said)
        self.assertEqual(alice.fanout.receiver.epochs[-1], 2)
        self.assertEqual(alice.fanout.mode, "multicast")
        self.air.cut = True
        for i in range(5):
            alice.say("cut %d" % i)
            self.advance(0.5)
        self.advance(6, step=0.1)
        self.assertEqual(
            self.messages(alice_seen),
            ["after carol"] + ["cut %d" % i for i in range(5)],
        )
        self.assertEqual(alice.fanout.mode, "tls")
        self.assertIn(
            "Multicast stopped for #lobby (no datagram for 5 s); back to TLS delivery.",
            alice_seen.status,
        )
