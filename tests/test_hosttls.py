"""The host's TLS layer (chatroom/hosttls.py): unbuffered, and closing while
a producer is registered."""

import socket
import ssl

from twisted.internet import defer, protocol, threads
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from chatroom.hosttls import HostTLSFactory, HostTLSProtocol
from chatroom.identity import HostIdentity
from chatroom.service import HostTLSServerEndpoint
from chatroom.tls import PinnedClientCreator, server_options

from .running_host import RunningHostMixin


class CapturingEndpoint:
    """A server endpoint that keeps the factory it was asked to listen with."""

    def listen(self, factory):
        self.factory = factory
        return defer.succeed(None)


class ListenerTests(SynchronousTestCase):
    """The host's TLS listeners use the unbuffered TLS protocol."""

    def test_not_buffering(self):
        """L{HostTLSServerEndpoint} listens with a L{HostTLSFactory}, whose
        connections are Twisted's plain L{TLSMemoryBIOProtocol}, not the
        L{BufferingTLSTransport} that holds writes for another turn."""
        inner = CapturingEndpoint()
        options = server_options(HostIdentity.generate())
        HostTLSServerEndpoint(inner, options).listen(
            protocol.Factory.forProtocol(protocol.Protocol)
        )
        self.assertIsInstance(inner.factory, HostTLSFactory)
        built = inner.factory.buildProtocol(None)
        self.assertIsInstance(built, HostTLSProtocol)
        self.assertNotIsInstance(built, BufferingTLSTransport)


@implementer(IPushProducer)
class ProducingProtocol(protocol.Protocol):
    """Registers itself as its transport's streaming producer, as
    L{chatroom.ircserver.IRCConnection} does; holds writes while paused."""

    def connectionMade(self):
        self.held = None
        self.lost = []
        self.transport.registerProducer(self, True)

    def write(self, data):
        if self.held is None:
            self.transport.write(data)
        else:
            self.held.append(data)

    def pauseProducing(self):
        if self.held is None:
            self.held = []

    def resumeProducing(self):
        held, self.held = self.held, None
        if held:
            self.transport.write(b"".join(held))

    def stopProducing(self):
        pass

    def connectionLost(self, reason):
        self.lost.append(reason)


class ReceivingProtocol(protocol.Protocol):
    """Keeps what it receives and how its connection ended."""

    def connectionMade(self):
        self.received = b""
        self.lost = []

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost.append(reason)


class CloseTests(SynchronousTestCase):
    """L{HostTLSProtocol.loseConnection} shuts TLS down although a producer
    is registered, after writing what the producer held."""

    def connect(self, greet=True):
        identity = HostIdentity.generate()
        clock = Clock()
        server_factory = HostTLSFactory(
            server_options(identity),
            False,
            protocol.Factory.forProtocol(ProducingProtocol),
            clock=clock,
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
            clock=clock,
            greet=greet,
        )
        # The wrappers forget their protocols when the connection is lost.
        return client.wrappedProtocol, server, server.wrappedProtocol, pump

    def test_close_while_producing(self):
        """A close with the producer registered and not paused sends the
        last write, then C{close_notify}: the peer sees a clean close."""
        client, server, producer, pump = self.connect()
        producer.write(b"ERROR :bye\r\n")
        server.loseConnection()
        pump.flush()
        self.assertEqual(client.received, b"ERROR :bye\r\n")
        self.assertEqual(len(client.lost), 1)
        # close_notify arrived: the peer's TLS layer ended cleanly.
        client.lost[0].trap(ConnectionDone)
        self.assertEqual(len(producer.lost), 1)

    def test_close_while_paused(self):
        """A close while the producer is paused waits for it to resume and
        write what it held; then TLS shuts down."""
        client, server, producer, pump = self.connect()
        server._until_closed.pauseProducing()
        producer.write(b"held line\r\n")
        server.loseConnection()
        pump.flush()
        self.assertEqual(client.received, b"")
        self.assertEqual(client.lost, [])
        server._until_closed.resumeProducing()
        pump.flush()
        self.assertEqual(client.received, b"held line\r\n")
        self.assertEqual(len(client.lost), 1)
        self.assertEqual(len(producer.lost), 1)

    def test_close_during_handshake(self):
        """A close before the handshake finished (the host stopping while
        a client is still handshaking) drops the connection at once, as
        Twisted does, with no error."""
        client, server, producer, pump = self.connect(greet=False)
        server.loseConnection()
        pump.flush()
        self.assertEqual(len(producer.lost), 1)
        self.assertEqual(len(client.lost), 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_plain_twisted_waits(self):
        """What this module works around, checked so that a change in
        Twisted shows here: Twisted's own L{TLSMemoryBIOProtocol} does not
        shut down while a producer is registered."""
        client, server, producer, pump = self.connect()
        super(HostTLSProtocol, server).loseConnection()
        pump.flush()
        self.assertEqual(client.lost, [])
        server.abortConnection()
        pump.flush()


class RealCloseTests(RunningHostMixin, TestCase):
    """A real host closes a TLS client that waits for the host to close."""

    timeout = 60

    def setUp(self):
        self.make_data_dir()

    def client(self, port, registered):
        """In a thread: register, tell the reactor, then read to the end;
        returns what was read and whether the end was a TLS close_notify."""

        def run():
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
                tls = context.wrap_socket(raw, suppress_ragged_eofs=False)
                tls.sendall(b"NICK alice\r\nUSER alice 0 * :Alice\r\n")
                data = b""
                told = False
                while True:
                    try:
                        chunk = tls.recv(4096)
                    except (ssl.SSLEOFError, ConnectionError):
                        return data, False
                    if not chunk:
                        return data, True
                    data += chunk
                    if not told and b" 001 " in data:
                        told = True
                        reactor.callFromThread(registered.callback, None)

        from twisted.internet import reactor

        return threads.deferToThread(run)

    @defer.inlineCallbacks
    def test_close_all_sends_close_notify(self):
        """C{close_all} says why and shuts TLS down itself: the client,
        which never hangs up on its own, sees C{ERROR} and then a clean TLS
        close (C{close_notify}), not the abort at the end of the grace."""
        port = yield self.start_host()
        registered = defer.Deferred()
        reading = self.client(port, registered)
        yield registered
        yield self.service.host.close_all("Server shutting down")
        data, clean = yield reading
        self.assertIn(b"ERROR :Closing link", data)
        self.assertTrue(clean, "the host did not send close_notify")
