"""The real host and the real client connected in memory, on one fake clock.

L{MemoryNetwork} serves a L{chatroom.host.RoomHost} through the real
L{chatroom.ircserver.IRCFactory} and gives L{chatroom.client.session.RoomSession}
an C{endpoint_for} whose connections are C{twisted.test.iosim} pumps.  Only
the host's public surface (C{RoomHost}, C{IRCFactory}) is used.

Links can be cut three ways, as a radio link is:

- L{Link.drop}: both ends see the connection close (a FIN or RST arrived);
- L{Link.silence}: nothing moves either way and nobody is told (the path
  died); the client end still closes locally when the client aborts;
- L{MemoryNetwork.refuse}: new connections fail (the host is unreachable).
"""

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.test import iosim

from chatroom.ircserver import IRCFactory

from .fakes import make_host


class Link:
    """One client connection: the pump and whether it carries bytes."""

    def __init__(self, pump):
        self.pump = pump
        self.silent = False

    @property
    def client(self):
        return self.pump.client

    @property
    def server(self):
        return self.pump.server

    @property
    def closed(self):
        return self.pump.clientIO.disconnected and self.pump.serverIO.disconnected

    def drop(self):
        """Both ends see the connection go."""
        self.silent = False
        self.pump.serverIO.loseConnection()

    def silence(self):
        """From now on nothing gets through, and nobody is told."""
        self.silent = True

    def step(self):
        """Move what can move; True if anything did."""
        if self.silent:
            # A local close still reaches the local protocol, as a kernel
            # reports a closed socket to its own side only.
            moved = False
            for io in (self.pump.clientIO, self.pump.serverIO):
                io.getOutBuffer()  # what is written is lost
                if io.disconnecting and not io.disconnected:
                    io.disconnected = True
                    io.reportDisconnect()
                    moved = True
            return moved
        return self.pump.pump(advanceClock=False)


def pump_between(client, server, port, clock):
    """Connect C{client} (at 127.0.0.1:C{port}) to C{server} (at
    127.0.0.1:6697) with an C{iosim} pump on C{clock}."""
    client_io = iosim.FakeTransport(
        client,
        False,
        IPv4Address("TCP", "127.0.0.1", port),
        IPv4Address("TCP", "127.0.0.1", 6697),
    )
    server_io = iosim.FakeTransport(
        server,
        True,
        IPv4Address("TCP", "127.0.0.1", 6697),
        IPv4Address("TCP", "127.0.0.1", port),
    )
    return iosim.connect(server, server_io, client, client_io, greet=False, clock=clock)


class _Endpoint:
    def __init__(self, network, address):
        self.network = network
        self.address = address

    def connect(self, factory):
        if self.network.refusing:
            return defer.fail(ConnectionRefusedError())
        client = factory.buildProtocol(None)
        server = self.network.factory.buildProtocol(None)
        pump = pump_between(
            client, server, self.network.next_port(), self.network.clock
        )
        self.network.links.append(Link(pump))
        return defer.succeed(client)


class MemoryNetwork:
    """A host and its clients in memory.

    @ivar clock: the one fake clock of the host, the clients and their
        sessions.
    @ivar links: every L{Link} made, oldest first.
    """

    def __init__(self, rooms=("lobby",), limits=None, clock=None):
        kwargs = {} if limits is None else {"limits": limits}
        self.host = make_host(rooms, clock=clock, **kwargs)
        self.clock = self.host.clock
        self.factory = IRCFactory(self.host)
        self.links = []
        self.refusing = False
        self._port = 40000

    def next_port(self):
        self._port += 1
        return self._port

    def endpoint_for(self, address, creator):
        """For C{RoomSession(endpoint_for=...)}: every address is the host."""
        return _Endpoint(self, address)

    def refuse(self, refusing=True):
        """New connections fail (True) or succeed again (False)."""
        self.refusing = refusing

    def settle(self, limit=1000):
        """Run the reactor turns due now and move bytes until all is quiet."""
        for _ in range(limit):
            self.clock.advance(0)
            moved = False
            for link in list(self.links):
                if link.step():
                    moved = True
            if not moved and not any(
                call.getTime() <= self.clock.seconds()
                for call in self.clock.getDelayedCalls()
            ):
                return
        raise AssertionError("the network did not settle in %d steps" % (limit,))

    def advance(self, seconds, step=1.0):
        """Let C{seconds} pass in steps, settling after each."""
        self.settle()
        while seconds > 0:
            self.clock.advance(min(step, seconds))
            seconds -= step
            self.settle()

    def live_links(self):
        return [link for link in self.links if not link.closed]


class Seen:
    """What one session showed its user."""

    def __init__(self):
        self.events = []
        self.status = []

    def on_event(self, event):
        self.events.append(event)

    def on_status(self, text):
        self.status.append(text)

    def messages(self):
        return [
            (e.sender, e.text) for e in self.events if e.kind in ("message", "action")
        ]


def new_session(network, target, nick, **kwargs):
    """A L{RoomSession} on C{network} (any object with C{clock} and
    C{endpoint_for}) that retries every second, with a L{Seen} of what it
    shows; not connected yet.  Returns C{(session, seen)}."""
    from chatroom.client.session import RoomSession

    seen = Seen()
    kwargs.setdefault("policy", lambda attempt: 1.0)
    session = RoomSession(
        network.clock,
        target,
        nick,
        on_event=seen.on_event,
        on_status=seen.on_status,
        endpoint_for=network.endpoint_for,
        **kwargs,
    )
    return session, seen
