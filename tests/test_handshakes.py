"""The cap on TLS handshakes in progress (chatroom.handshakes)."""

from twisted.internet import defer, endpoints, protocol, reactor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHandshakeListener, ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import directlyProvides, implementer

from chatroom.core.addresses import address_key, is_loopback
from chatroom.handshakes import (
    HandshakeLimitFactory,
    HandshakeLimitProtocol,
    HandshakeLimits,
)
from chatroom.history import HistoryStore
from chatroom.identity import HostIdentity
from chatroom.service import HostService
from tests.test_hosttls import ReceivingProtocol


@implementer(IHandshakeListener)
class Inner(protocol.Protocol):
    """Records what the wrapper passes on."""

    def __init__(self):
        self.completed = 0
        self.made = False
        self.lost = False

    def connectionMade(self):
        self.made = True

    def handshakeCompleted(self):
        self.completed += 1

    def connectionLost(self, reason):
        self.lost = True


class FakePort:
    """A listening port that records pauses (as TCP ports are producers)."""

    def __init__(self):
        self.paused = False

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False


class HandshakeLimitTests(SynchronousTestCase):
    """Counting from accept to handshakeCompleted."""

    def setUp(self):
        self.clock = Clock()
        self.counts = []
        self.inner = []
        wrapped = protocol.Factory.forProtocol(
            lambda: self.inner.append(Inner()) or self.inner[-1]
        )
        self.factory = HandshakeLimitFactory(
            wrapped,
            HandshakeLimits(in_progress=4, per_address=2),
            self.clock,
            count=self.counts.append,
        )
        self.port = FakePort()
        self.factory.add_port(self.port)
        self.logged = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def connect(self, address, tls=True):
        transport = StringTransport(peerAddress=_Address(address))
        if tls:
            directlyProvides(transport, ISSLTransport)
        wrapper = self.factory.buildProtocol(None)
        wrapper.makeConnection(transport)
        return wrapper, transport

    def warnings(self):
        return [
            e
            for e in self.logged
            if e.get("log_namespace", "").startswith("chatroom.handshakes")
        ]

    def test_per_address(self):
        """A third handshake from one address is closed before its protocol
        is made; other addresses and loopback are not affected."""
        self.connect("192.0.2.1")
        self.connect("192.0.2.1")
        wrapper, transport = self.connect("192.0.2.1")
        self.assertTrue(transport.disconnecting)
        self.assertEqual([inner.made for inner in self.inner], [True, True, False])
        self.assertEqual(self.counts, ["handshakes-refused-per-address"])
        _, other = self.connect("192.0.2.2")
        self.assertFalse(other.disconnecting)
        self.assertEqual(self.factory.in_progress, 3)
        # The refused one's loss changes no count.
        wrapper.connectionLost(None)
        self.assertEqual(self.factory.per_address, {"192.0.2.1": 2, "192.0.2.2": 1})

    def test_completion_frees_the_slot(self):
        first, _ = self.connect("192.0.2.1")
        self.connect("192.0.2.1")
        first.handshakeCompleted()
        self.assertEqual(self.inner[0].completed, 1)
        _, transport = self.connect("192.0.2.1")
        self.assertFalse(transport.disconnecting)
        # Losing a completed connection does not count it twice.
        first.connectionLost(None)
        self.assertEqual(self.factory.per_address, {"192.0.2.1": 2})
        self.assertTrue(self.inner[0].lost)

    def test_failed_handshake_frees_the_slot(self):
        first, _ = self.connect("192.0.2.1")
        self.connect("192.0.2.1")
        first.connectionLost(None)
        _, transport = self.connect("192.0.2.1")
        self.assertFalse(transport.disconnecting)

    def test_failed_tls_is_counted(self):
        """A connection lost to a TLS error before its handshake completed
        (a plain-text client on the TLS port) is counted; a clean close
        before it, or a TLS error after it, is not."""
        from OpenSSL import SSL
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        bad, _ = self.connect("192.0.2.1")
        bad.connectionLost(Failure(SSL.Error([("SSL", "", "wrong version number")])))
        gone, _ = self.connect("192.0.2.2")
        gone.connectionLost(Failure(ConnectionDone()))
        done, _ = self.connect("192.0.2.3")
        done.handshakeCompleted()
        done.connectionLost(Failure(SSL.Error([])))
        self.assertEqual(self.counts, ["handshake-failures"])

    def test_ipv6_grouped_per_64(self):
        self.connect("2001:db8::1")
        self.connect("2001:db8::2")
        _, transport = self.connect("2001:db8::ffff")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(address_key("2001:db8::1"), "2001:db8::/64")

    def test_is_loopback(self):
        """This machine's addresses, in every spelling; nothing else."""
        for address in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
            self.assertTrue(is_loopback(address), address)
        for address in ("192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1", "local"):
            self.assertFalse(is_loopback(address), address)

    def test_ipv4_mapped(self):
        """On a dual-stack socket an IPv4 client counts as its IPv4 address
        (not one /64 for every IPv4 client), and the protocol inside sees
        that address; mapped loopback stays exempt."""
        self.connect("::ffff:192.0.2.1")
        self.connect("192.0.2.1")
        _, transport = self.connect("::ffff:192.0.2.1")
        self.assertTrue(transport.disconnecting)
        _, other = self.connect("::ffff:192.0.2.2")
        self.assertFalse(other.disconnecting)
        self.assertEqual(address_key("::ffff:127.0.0.1"), None)
        wrapper = self.factory.buildProtocol(None)
        wrapper.makeConnection(
            StringTransport(peerAddress=IPv6Address("TCP", "::ffff:192.0.2.9", 4000))
        )
        self.assertEqual(
            wrapper.wrappedProtocol.transport.getPeer(),
            IPv4Address("TCP", "192.0.2.9", 4000),
        )

    def test_global_cap_pauses_accepting(self):
        """At the global cap the ports stop accepting; one completion
        resumes them.  Loopback counts here."""
        wrappers = [self.connect("127.0.0.1")[0] for _ in range(3)]
        self.assertFalse(self.port.paused)
        wrappers.append(self.connect("127.0.0.1")[0])
        self.assertTrue(self.port.paused)
        self.assertTrue(self.factory.paused)
        self.assertEqual(self.counts, ["handshakes-paused"])
        late = FakePort()
        self.factory.add_port(late)
        self.assertTrue(late.paused)
        wrappers[0].handshakeCompleted()
        self.assertFalse(self.port.paused)
        self.assertFalse(late.paused)

    def test_logged_once(self):
        """A cap that keeps tripping is logged once, and again only after a
        quiet minute."""
        self.connect("192.0.2.1")
        self.connect("192.0.2.1")
        for _ in range(5):
            self.connect("192.0.2.1")
            self.clock.advance(30)
        self.assertEqual(len(self.warnings()), 1)
        self.assertEqual(self.counts.count("handshakes-refused-per-address"), 5)
        self.clock.advance(61)
        self.connect("192.0.2.1")
        self.assertEqual(len(self.warnings()), 2)
        self.assertIn("--max-handshakes-per-address", self.warnings()[0]["log_format"])

    def test_plain_connections_not_counted(self):
        for _ in range(10):
            _, transport = self.connect("192.0.2.1", tls=False)
            self.assertFalse(transport.disconnecting)
        self.assertEqual(self.factory.in_progress, 0)
        self.assertFalse(self.port.paused)


def _Address(host):
    if ":" in host:
        return IPv6Address("TCP", host, 1234)
    return IPv4Address("TCP", host, 1234)


@defer.inlineCallbacks
def start_tls_host(case, handshakes):
    """A host with a TLS listener on 127.0.0.1 (any port), started, and
    stopped when C{case} ends; fires with (service, listening port)."""
    host = HostService(
        reactor,
        HostIdentity.generate(),
        HistoryStore(":memory:"),
        ["lobby"],
        tls_port=0,
        tls_interface="127.0.0.1",
        handshakes=handshakes,
    )
    host.startService()
    case.addCleanup(host.stopService)
    (port,) = yield host.listening_ports()
    return host, port


class RealHandshakeTests(TestCase):
    """Over real TLS on 127.0.0.1: a half-open handshake holds a slot, a
    completed one gives it back, and the IRC side still sees completion."""

    timeout = 30

    @defer.inlineCallbacks
    def test_half_open_holds_slot(self):
        host, port = yield start_tls_host(self, HandshakeLimits(in_progress=1))
        started, finished = defer.Deferred(), defer.Deferred()
        _fire_after(host.factory, "handshake_started", started)
        _fire_after(host.factory, "handshake_finished", finished)
        # A TCP connection that never starts TLS: a handshake in progress.
        connected = defer.Deferred()

        class Silent(protocol.Protocol):
            def connectionMade(self):
                connected.callback(self)

        endpoint = endpoints.TCP4ClientEndpoint(
            reactor, "127.0.0.1", port.getHost().port
        )
        silent = yield endpoint.connect(protocol.Factory.forProtocol(Silent))
        yield connected
        yield started
        self.assertEqual(host.factory.in_progress, 1)
        self.assertTrue(host.factory.paused)
        self.assertEqual(host.host.counters.get("handshakes-paused"), 1)
        lost = defer.Deferred()
        silent.connectionLost = lambda reason: lost.callback(None)
        silent.transport.loseConnection()
        yield lost
        yield finished
        self.assertEqual(host.factory.in_progress, 0)
        self.assertFalse(host.factory.paused)


class PlainOnTLSPortTests(TestCase):
    """Over real sockets on 127.0.0.1: a failed handshake is counted."""

    timeout = 30

    @defer.inlineCallbacks
    def test_plain_text_on_the_tls_port_is_counted(self):
        """IRC in plain text sent to the TLS port fails the handshake; the
        operator sees it in the counters (C{handshake-failures})."""
        host, port = yield start_tls_host(self, HandshakeLimits())
        finished = defer.Deferred()
        _fire_after(host.factory, "handshake_finished", finished)
        lost = defer.Deferred()

        class Plain(protocol.Protocol):
            def connectionMade(self):
                self.transport.write(b"NICK plain\r\nUSER plain 0 * :P\r\n")

            def connectionLost(self, reason):
                lost.callback(None)

        endpoint = endpoints.TCP4ClientEndpoint(
            reactor, "127.0.0.1", port.getHost().port
        )
        yield endpoint.connect(protocol.Factory.forProtocol(Plain))
        yield finished
        yield lost
        self.assertEqual(host.host.counters.get("handshake-failures"), 1)


def _fire_after(factory, name, deferred):
    """Make C{factory.name(...)} also fire C{deferred} (once)."""
    method = getattr(factory, name)

    def wrapper(*args):
        result = method(*args)
        if not deferred.called:
            deferred.callback(None)
        return result

    setattr(factory, name, wrapper)


class BurstTests(TestCase):
    """A burst of honest clients over the global cap waits, it is not refused."""

    timeout = 60

    @defer.inlineCallbacks
    def test_burst_all_served(self):
        from chatroom.client.protocol import RoomClientProtocol
        from chatroom.host import Limits
        from chatroom.tls import PinnedClientCreator

        from .running_host import Recorder

        identity = HostIdentity.generate()
        host = HostService(
            reactor,
            identity,
            HistoryStore(":memory:"),
            ["lobby"],
            tls_port=0,
            tls_interface="127.0.0.1",
            limits=Limits(flood_rate=0),
            handshakes=HandshakeLimits(in_progress=4),
        )
        host.startService()
        self.addCleanup(host.stopService)
        (port,) = yield host.listening_ports()
        creator = PinnedClientCreator(identity.public_key)
        endpoint = endpoints.wrapClientTLS(
            creator,
            endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port),
        )
        # All connections are started in one reactor turn, so the host
        # accepts them together, well over the cap of 4.
        connecting = [
            endpoint.connect(
                protocol.Factory.forProtocol(
                    lambda n=n: RoomClientProtocol("user%d" % (n,), Recorder())
                )
            )
            for n in range(30)
        ]
        clients = yield defer.gatherResults(connecting)
        for client in clients:
            self.addCleanup(client.transport.abortConnection)
        yield defer.gatherResults([client.registered for client in clients])
        self.assertGreaterEqual(host.host.counters.get("handshakes-paused", 0), 1)
        self.assertNotIn("handshakes-refused-per-address", host.host.counters)
        self.assertEqual(host.factory.in_progress, 0)
        self.assertFalse(host.factory.paused)


class StepOutTests(SynchronousTestCase):
    """Once the TLS handshake completed the wrapper leaves the chain: the
    TLS protocol and the IRC connection talk to each other directly (in
    memory: iosim pumps, one fake clock)."""

    def connect(self, peer=IPv4Address("TCP", "192.0.2.7", 4000)):
        from twisted.protocols.tls import TLSMemoryBIOFactory
        from twisted.test import iosim

        from chatroom.hosttls import HostTLSFactory
        from chatroom.ircserver import IRCFactory
        from chatroom.tls import PinnedClientCreator, server_options

        from .fakes import make_host

        self.host = make_host()
        clock = self.host.clock
        identity = HostIdentity.generate()
        self.factory = HandshakeLimitFactory(
            IRCFactory(self.host), HandshakeLimits(), clock
        )
        server_factory = HostTLSFactory(
            server_options(identity), False, self.factory, clock=clock
        )
        client_factory = TLSMemoryBIOFactory(
            PinnedClientCreator(identity.public_key),
            True,
            protocol.Factory.forProtocol(ReceivingProtocol),
            clock=clock,
        )
        client, server, pump = iosim.connectedServerAndClient(
            lambda: server_factory.buildProtocol(None),
            lambda: client_factory.buildProtocol(None),
            serverTransportFactory=lambda p: iosim.FakeTransport(
                p, isServer=True, peerAddress=peer
            ),
            clock=clock,
            greet=False,
        )
        return client, server, pump

    def test_steps_out(self):
        """Before the handshake the wrapper is between the TLS protocol and
        the connection and counted; after it, it is gone: the TLS
        protocol's C{wrappedProtocol} is the connection, whose transport
        (and its line guard's) is the TLS protocol, the factory forgets
        the wrapper and nothing refers to it any more."""
        import weakref

        from chatroom.ircserver import IRCConnection

        client, server, pump = self.connect()
        wrapper = server.wrappedProtocol
        self.assertIsInstance(wrapper, HandshakeLimitProtocol)
        connection = wrapper.wrappedProtocol
        self.assertIs(connection.transport, wrapper)
        self.assertEqual(self.factory.in_progress, 1)
        self.assertIn(wrapper, self.factory.protocols)
        gone = weakref.ref(wrapper)
        del wrapper
        pump.flush()
        self.assertIsInstance(server.wrappedProtocol, IRCConnection)
        self.assertIs(server.wrappedProtocol, connection)
        self.assertIs(connection.transport, server)
        self.assertIs(connection._guard.transport, server)
        self.assertEqual(self.factory.protocols, {})
        self.assertEqual(self.factory.in_progress, 0)
        self.assertIsNone(gone())
        # The connection knows the handshake completed (registration phase).
        self.assertEqual(connection.lifecycle.phase.name, "REGISTERING")

    def test_reads_writes_close(self):
        """After stepping out, lines go both ways, the peer's address is the
        unmapped IPv4 one wherever the connection shows it (WHOIS, the
        source of its messages), and the connection's loss reaches it."""
        client, server, pump = self.connect(
            IPv6Address("TCP", "::ffff:192.0.2.7", 4000)
        )
        pump.flush()
        connection = server.wrappedProtocol
        peer = client.wrappedProtocol
        client.write(b"NICK alice\r\nUSER alice 0 * :Alice\r\nWHOIS alice\r\n")
        pump.flush()
        received = peer.received
        self.assertIn(b" 001 alice ", received)
        self.assertIn(b" 311 alice alice ~alice 192.0.2.7 * Alice\r\n", received)
        self.assertEqual(connection.source, "alice!~alice@192.0.2.7")
        self.assertEqual(self.host.clients, 1)
        client.loseConnection()
        pump.flush()
        self.assertEqual(len(peer.lost), 1)
        self.assertFalse(connection.lifecycle.open)
        self.assertEqual(self.host.connections, set())
        self.assertEqual(self.host.clients, 0)
        self.assertEqual(self.factory.protocols, {})

    def test_plain_stays(self):
        """Without TLS there is no handshake: the wrapper stays, so that the
        connection still sees the unmapped address."""
        from chatroom.ircserver import IRCFactory

        from .fakes import make_host

        host = make_host()
        factory = HandshakeLimitFactory(IRCFactory(host), HandshakeLimits(), host.clock)
        wrapper = factory.buildProtocol(None)
        wrapper.makeConnection(
            StringTransport(peerAddress=IPv6Address("TCP", "::ffff:192.0.2.9", 4000))
        )
        connection = wrapper.wrappedProtocol
        self.assertIs(connection.transport, wrapper)
        self.assertEqual(connection.address, "192.0.2.9")
        self.assertIn(wrapper, factory.protocols)
