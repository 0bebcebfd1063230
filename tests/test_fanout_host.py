"""The host's fan-out edge: capability, keys, one datagram per room per
turn, rotation when a member leaves, repair over TLS (raw IRC lines over
StringTransport, datagrams caught by a fake socket)."""

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from twisted.trial.unittest import SynchronousTestCase

from chatroom.core.errors import ParseError
from chatroom.core.fanout import (
    Datagram,
    KeyGrant,
    RoomIdentity,
    open_datagram,
)
from chatroom.core.ircline import parse_line
from chatroom.core.fanout_sender import REPAIR_WINDOW
from chatroom.core.fanout import CAPABILITY
from chatroom.fanout import HostFanout
from chatroom.host import Limits

from .fakes import FakeClient, FakeGroupSender, make_host

TAKERS = ("message-tags", "server-time", "echo-message", CAPABILITY)


class HostFanoutTests(SynchronousTestCase):
    def setUp(self):
        self.host = make_host(limits=Limits(flood_rate=0))
        self.key = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
        self.q = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.socket = FakeGroupSender()
        counter = iter(range(1, 1000))
        self.host.fanout = HostFanout(
            self.host,
            self.key,
            self.q,
            self.socket,
            random_bytes=lambda n: bytes([next(counter)]) * n,
        )
        self.identity = RoomIdentity(self.q, "lobby")

    def taker(self, nick):
        """A member that takes multicast delivery: returns (client, grant)."""
        client = FakeClient(self.host).register(nick, TAKERS)
        client.send("JOIN #lobby")
        messages = client.messages()
        self.assertEqual([m.command for m in messages][-1], "FANOUT")
        grant = KeyGrant.from_params(messages[-1].params)
        client.send("FANOUT #lobby START %d" % (grant.epoch_key.epoch,))
        (mode,) = client.messages()
        self.assertEqual(mode.params[1:3], ("MODE", "MULTICAST"))
        return client, grant

    def opened(self, grant):
        """Every datagram sent so far, opened with C{grant}'s key."""
        result = []
        for data in self.socket.sent:
            datagram = Datagram.from_bytes(data)
            try:
                result.append(open_datagram(datagram, self.identity, grant.epoch_key))
            except ParseError as e:
                result.append(e.reason)
        self.socket.sent = []
        return result

    def test_capability_offered_and_required_caps(self):
        client = FakeClient(self.host)
        client.send("CAP LS 302")
        (ls,) = client.messages()
        self.assertIn(CAPABILITY, ls.params[2].split())
        client.send("CAP REQ :" + CAPABILITY)
        self.assertEqual(client.messages()[0].params[1], "NAK")
        client.send("CAP REQ :message-tags server-time echo-message " + CAPABILITY)
        self.assertEqual(client.messages()[0].params[1], "ACK")

    def test_not_offered_without_fanout(self):
        self.host.fanout = None
        client = FakeClient(self.host)
        client.send("CAP LS 302")
        self.assertNotIn(CAPABILITY, client.messages()[0].params[2])
        other = FakeClient(self.host).register("alice")
        other.send("FANOUT #lobby SYNC")
        self.assertEqual(other.commands(), ["421"])

    def test_one_datagram_per_turn_whatever_the_members(self):
        """Three multicast members, a TLS member: one datagram per turn,
        nothing over TLS to the multicast members, and the same events."""
        takers = [self.taker(nick) for nick in ("a", "b", "c")]
        stock = FakeClient(self.host).register("irssi").join()
        self.socket.sent = []
        for client, _ in takers:
            client.raw()
        stock.send("PRIVMSG #lobby :one", "PRIVMSG #lobby :two")
        self.assertEqual(len(self.socket.sent), 1)
        (opened,) = self.opened(takers[0][1])
        texts = [parse_line(line).params[1] for line in opened.lines]
        self.assertEqual(texts, ["one", "two"])
        for client, _ in takers:
            self.assertEqual(client.raw(), b"")

    def test_stock_client_unaffected(self):
        self.taker("a")
        stock = FakeClient(self.host).register("irssi").join()
        self.taker("b")
        stock.raw()
        self.host.rooms["lobby"]  # the room exists
        a = self.host.nick_owner("a")
        self.host.submit(
            self.host.rooms["lobby"].post(a, "PRIVMSG", "hello", self.host.now_ms())
        )
        self.host.clock.advance(0)
        (line,) = stock.messages()
        self.assertEqual(line.params, ("#lobby", "hello"))

    def test_rotation_on_part_hides_later_events(self):
        """The leaver's key opens nothing sent after its PART; the others
        get the new key over TLS."""
        alice, alice_grant = self.taker("alice")
        bob, bob_grant = self.taker("bob")
        self.socket.sent = []
        bob.send("PART #lobby :bye")
        keys = [m for m in alice.messages() if m.command == "FANOUT"]
        self.assertEqual(len(keys), 1)
        new_grant = KeyGrant.from_params(keys[0].params)
        self.assertGreater(new_grant.epoch_key.epoch, alice_grant.epoch_key.epoch)
        self.assertNotIn("FANOUT", bob.commands())
        alice.send("PRIVMSG #lobby :secret")
        sent = list(self.socket.sent)
        for reason in self.opened(bob_grant):
            self.assertIn(reason, ("bad-ciphertext",))
        self.socket.sent = sent
        texts = [o.lines for o in self.opened(new_grant) if not isinstance(o, str)]
        self.assertIn(b"secret", b"".join(line for ls in texts for line in ls if line))

    def test_rotation_on_disconnect(self):
        alice, alice_grant = self.taker("alice")
        bob, bob_grant = self.taker("bob")
        bob.disconnect()
        keys = [m for m in alice.messages() if m.command == "FANOUT"]
        self.assertEqual(len(keys), 1)
        self.assertNotEqual(
            KeyGrant.from_params(keys[0].params).epoch_key, bob_grant.epoch_key
        )

    def test_repair_over_tls(self):
        alice, grant = self.taker("alice")
        stock = FakeClient(self.host).register("irssi").join()
        self.socket.sent = []
        stock.send("PRIVMSG #lobby :x", "PRIVMSG #lobby :y")
        opened = [o for o in self.opened(grant) if o.kind == 1]
        first = opened[0].seq
        alice.send("FANOUT #lobby REPAIR %d-%d" % (first, first + 1))
        # The host gathers requests for a window before it answers (NACK
        # aggregation); one asker is answered over TLS.
        self.assertEqual(alice.messages(), [])
        self.host.clock.advance(REPAIR_WINDOW)
        messages = alice.messages()
        self.assertEqual([m.params[-1] for m in messages[:2]], ["x", "y"])
        self.assertEqual(
            messages[-1].params[1:], ("REPAIRED", "%d-%d" % (first, first + 1))
        )

    def test_bad_requests(self):
        alice, _ = self.taker("alice")
        alice.send("FANOUT #lobby REPAIR banana", "FANOUT #nope SYNC")
        fails = alice.messages()
        self.assertEqual(
            [(m.command, m.params[1]) for m in fails],
            [("FAIL", "INVALID_PARAMS"), ("FAIL", "NOT_AVAILABLE")],
        )
        self.assertEqual(self.host.counters["fanout-bad-requests"], 1)

    def test_labelled_echo_over_tls(self):
        """A multicast member's labelled message is answered over TLS with
        its echo carrying the label, as for a TLS member."""
        alice, _ = self.taker("alice")
        alice.send("CAP REQ :labeled-response")
        alice.messages()
        alice.send("@label=l1 PRIVMSG #lobby :mine")
        (echo,) = alice.messages()
        self.assertEqual(
            (echo.command, echo.params[-1], echo.tags["label"]),
            ("PRIVMSG", "mine", "l1"),
        )
