"""The client protocol alone, over a StringTransport: raw IRC lines in and out."""

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chatroom.client.protocol import RoomClientProtocol
from chatroom.core.ircline import parse_line


class Recorder:
    def __init__(self):
        self.messages = []
        self.lost = []

    def message_received(self, message):
        self.messages.append(message)

    def connection_lost(self, reason):
        self.lost.append(reason)


class ClientProtocolTestsMixin:
    def connect(self, nick="alice", keepalive=False, **kwargs):
        self.clock = Clock()
        if keepalive:
            kwargs["clock"] = self.clock
        self.recorder = Recorder()
        self.transport = StringTransport()
        self.protocol = RoomClientProtocol(nick, self.recorder, **kwargs)
        self.protocol.makeConnection(self.transport)
        return self.protocol

    def sent(self):
        """The lines the client wrote since last asked, parsed."""
        data = self.transport.value()
        self.transport.clear()
        return [parse_line(line) for line in data.split(b"\r\n") if line]

    def receive(self, *lines):
        for line in lines:
            self.protocol.dataReceived(line.encode("utf-8") + b"\r\n")


class RelayedLineTests(ClientProtocolTestsMixin, SynchronousTestCase):
    def test_long_relayed_message_is_kept(self):
        """A member may send a 512-byte line; relayed with its source in
        front, it is longer than 512 bytes and still reaches the user
        (issue 9 item 5: it used to be dropped as malformed)."""
        self.connect()
        text = "y" * (510 - len("PRIVMSG #lobby :"))
        self.receive("@msgid=lobby:7 :bob!~bob@192.0.2.1 PRIVMSG #lobby :" + text)
        (message,) = self.recorder.messages
        self.assertEqual(message.params, ("#lobby", text))


class NickFallbackTests(ClientProtocolTestsMixin, SynchronousTestCase):
    """433 during registration: try the next nick, as irssi and WeeChat do."""

    def test_walks_the_list_then_fails(self):
        from chatroom.client.errors import nick_alternatives
        from chatroom.client.protocol import NickInUse

        self.connect("alice", fallback_nicks=nick_alternatives("alice"))
        self.sent()
        tried = []
        for _ in range(11):
            self.receive(
                ":host 433 * %s :Nickname is already in use" % (self.protocol.nick,)
            )
            (nick,) = self.sent()
            self.assertEqual(nick.command, "NICK")
            tried.append(nick.params[0])
        self.assertEqual(
            tried, ["alice_", "alice__"] + ["alice%d" % n for n in range(1, 10)]
        )
        self.assertNoResult(self.protocol.registered)
        self.receive(":host 433 * alice9 :Nickname is already in use")
        self.failureResultOf(self.protocol.registered, NickInUse)

    def test_registers_under_the_fallback(self):
        self.connect("alice", fallback_nicks=["alice_"])
        self.receive(
            ":host 433 * alice :Nickname is already in use",
            ":host 001 alice_ :Welcome",
            ":host 005 alice_ LINELEN=512 NICKLEN=30 :are supported",
        )
        self.assertEqual(
            self.successResultOf(self.protocol.registered).params[0], "alice_"
        )
        self.assertEqual(
            (self.protocol.nick, self.protocol.wanted_nick), ("alice_", "alice")
        )
        self.assertEqual(self.protocol.isupport["LINELEN"], "512")

    def test_long_nick_alternatives_fit(self):
        from chatroom.client.errors import nick_alternatives

        alternatives = nick_alternatives("a" * 30)
        self.assertEqual({len(n) for n in alternatives}, {30})
        self.assertEqual(len(set(alternatives)), 11)

    def test_without_fallbacks_433_fails(self):
        from chatroom.client.protocol import NickInUse

        self.connect("alice")
        self.receive(":host 433 * alice :Nickname is already in use")
        self.failureResultOf(self.protocol.registered, NickInUse)


class KeepaliveTests(ClientProtocolTestsMixin, SynchronousTestCase):
    """Issue 12 item 2: PING after 30 s of silence, hang up 30 s later."""

    def registered(self):
        self.connect(keepalive=True)
        self.receive(":host 001 alice :Welcome")
        self.sent()

    def test_probe_then_hang_up(self):
        from chatroom.client.protocol import LinkDead

        self.registered()
        self.clock.advance(29)
        self.assertEqual(self.sent(), [])
        self.clock.advance(1)
        (ping,) = self.sent()
        self.assertEqual(ping.command, "PING")
        self.clock.advance(30)
        self.assertTrue(self.transport.disconnecting)
        self.protocol.connectionLost(Failure(ConnectionDone()))
        (reason,) = self.recorder.lost
        self.assertTrue(reason.check(LinkDead))
        self.assertIn("PING", str(reason.value))

    def test_pong_keeps_it(self):
        self.registered()
        self.clock.advance(30)
        (ping,) = self.sent()
        self.receive(":host PONG host %s" % (ping.params[0],))
        self.clock.advance(29)
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.sent(), [])

    def test_no_clock_no_probe(self):
        self.connect()
        self.receive(":host 001 alice :Welcome")
        self.assertIsNone(self.protocol.keepalive)

    def test_no_probe_before_registration(self):
        """Before the welcome the attempt's own deadline applies."""
        self.connect(keepalive=True)
        self.sent()
        self.clock.advance(120)
        self.assertEqual(self.sent(), [])
