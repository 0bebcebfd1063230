"""TCP that sends at once (chatroom/eagertcp.py), and the Twisted internals
it relies on."""

from twisted.internet import defer, protocol, reactor, tcp
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial.unittest import TestCase

from chatroom.eagertcp import EagerPort, EagerServer, EagerTCP4ServerEndpoint
from chatroom.identity import HostIdentity
from chatroom.service import HostService
from chatroom.history import HistoryStore


class Writer(protocol.Protocol):
    """Writes C{payload} once connected and records what its transport
    holds queued right after the write."""

    payload = b""

    def connectionMade(self):
        self.factory.connected.append(self)
        self.transport.write(self.payload)
        transport = self.transport
        self.queued_after_write = (
            len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        )
        self.transport.loseConnection()


class Reader(protocol.Protocol):
    """Collects what it receives; fires C{done} with it at the end."""

    def __init__(self):
        self.received = []
        self.done = defer.Deferred()

    def dataReceived(self, data):
        self.received.append(data)

    def connectionLost(self, reason):
        self.done.callback(b"".join(self.received))


class EagerTCPTests(TestCase):
    """An L{EagerServer} sends what it can at once and queues the rest."""

    timeout = 60

    @defer.inlineCallbacks
    def exchange(self, endpoint, payload):
        """Listen on C{endpoint} with a L{Writer} of C{payload}; connect a
        L{Reader}; fires with (writer, what the reader received)."""
        factory = protocol.Factory.forProtocol(Writer)
        factory.connected = []
        Writer.payload = payload
        self.addCleanup(setattr, Writer, "payload", b"")
        port = yield endpoint.listen(factory)
        self.addCleanup(port.stopListening)
        reader = Reader()
        yield TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
            protocol.Factory.forProtocol(lambda: reader)
        )
        received = yield reader.done
        return factory.connected[0], received

    @defer.inlineCallbacks
    def test_small_write_sent_at_once(self):
        """A write to a connection with nothing queued leaves nothing
        queued: it went to the socket in the call."""
        writer, received = yield self.exchange(
            EagerTCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), b"x" * 1000
        )
        self.assertIsInstance(writer.transport, EagerServer)
        self.assertEqual(writer.queued_after_write, 0)
        self.assertEqual(received, b"x" * 1000)

    @defer.inlineCallbacks
    def test_plain_twisted_queues(self):
        """What L{EagerServer} relies on, checked so that a change in
        Twisted shows here: Twisted's own TCP transport queues a write in
        C{dataBuffer}/C{_tempDataLen} (the attributes L{EagerServer} reads)
        until the reactor's next turn."""
        from twisted.internet.endpoints import TCP4ServerEndpoint

        writer, received = yield self.exchange(
            TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), b"x" * 1000
        )
        self.assertIs(type(writer.transport), tcp.Server)
        self.assertEqual(writer.queued_after_write, 1000)
        self.assertEqual(received, b"x" * 1000)

    @defer.inlineCallbacks
    def test_rest_queued_in_order(self):
        """What the kernel does not take at once is queued and follows in
        order (64 MiB cannot fit a loopback socket's buffers)."""
        payload = bytes(range(256)) * (256 * 1024)
        writer, received = yield self.exchange(
            EagerTCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), payload
        )
        self.assertGreater(writer.queued_after_write, 0)
        self.assertLess(writer.queued_after_write, len(payload))
        self.assertEqual(received, payload)


class HostListenerTests(TestCase):
    """The host's main TLS port is an L{EagerPort}."""

    @defer.inlineCallbacks
    def test_main_port_is_eager(self):
        store = HistoryStore(self.mktemp())
        service = HostService(
            reactor,
            HostIdentity.generate(),
            store,
            ["lobby"],
            tls_port=0,
            tls_interface="127.0.0.1",
        )
        service.startService()
        self.addCleanup(service.stopService)
        (port,) = yield service.listening_ports()
        self.assertIsInstance(port, EagerPort)
