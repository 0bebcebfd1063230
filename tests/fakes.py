"""Test doubles shared by the test modules: IRC clients over StringTransport."""

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from zope.interface import implementer

from chatroom.core.ircline import parse_line
from chatroom.history import HistoryStore
from chatroom.host import Limits, RoomHost
from chatroom.interfaces import IRoomMember
from chatroom.ircserver import IRCConnection


def make_host(rooms=("lobby",), limits=Limits(), store=None, clock=None):
    """A RoomHost on an in-memory store and a fake clock."""
    clock = clock if clock is not None else Clock()
    clock.advance(1764000000)  # a realistic wall clock, 2025-11-24
    store = store if store is not None else HistoryStore(":memory:")
    return RoomHost(store, clock, "test.host", rooms, limits)


class FakeClient:
    """One IRC client connected to a host through a StringTransport."""

    def __init__(self, host, address="127.0.0.1"):
        self.host = host
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", address, 40000))
        self.protocol = IRCConnection(host)
        self.protocol.makeConnection(self.transport)

    def send(self, *lines):
        """Send lines (CR LF added), then let the host finish the turn."""
        for line in lines:
            self.protocol.dataReceived(line.encode("utf-8") + b"\r\n")
        self.host.clock.advance(0)

    def raw(self):
        """Everything written so far, cleared."""
        data = self.transport.value()
        self.transport.clear()
        return data

    def messages(self):
        """The parsed lines written so far, cleared."""
        return [parse_line(line) for line in self.raw().split(b"\r\n") if line]

    def commands(self):
        """The commands of the lines written so far, cleared."""
        return [m.command for m in self.messages()]

    def register(self, nick, caps=()):
        """Register as C{nick}, asking for C{caps}; drop the welcome."""
        if caps:
            self.send("CAP LS 302", "CAP REQ :" + " ".join(caps))
        self.send("NICK " + nick, "USER %s 0 * :%s" % (nick, nick.title()))
        if caps:
            self.send("CAP END")
        assert self.protocol.registered, self.raw()
        self.raw()
        return self

    def join(self, channel="#lobby"):
        """Join C{channel}; drop the replies."""
        self.send("JOIN " + channel)
        self.raw()
        return self

    def disconnect(self):
        """The connection drops."""
        self.protocol.connectionLost()
        self.host.clock.advance(0)


@implementer(IRoomMember)
class FakeMember:
    """A room member with no connection: it keeps what it is delivered.

    The third kind of L{IRoomMember} beside the TLS connection and the
    multicast fan-out; the shared behaviour suite runs against it.
    """

    def __init__(self, nick, variant=0, echo=False):
        self.nick = nick
        self.user = "~" + nick
        self.realname = nick
        self.address = "fake"
        self.source = "%s!~%s@fake" % (nick, nick)
        self.variant = variant
        self.echo = echo
        self.caps = frozenset()
        self.monitoring = {}
        self.received = []
        self.disconnected = None

    def deliver(self, data):
        self.received.append(data)

    def disconnect(self, reason):
        self.disconnected = reason


class FakeGroupSender:
    """Catches what a host sends to the fan-out group."""

    group = "239.255.67.70"
    port = 47668

    def __init__(self):
        self.sent = []

    def send(self, data):
        self.sent.append(data)
