"""Client certificates over real TLS on 127.0.0.1: asked for, never required, read back.

The host's server context asks every client for a certificate; chatroom
clients present their own key's, stock clients (irssi, WeeChat, stdlib ssl
without a certificate) present none and still connect.
L{chatroom.tls.client_key} gives the host the raw key of what was presented.
"""

import os
import socket
import ssl

from cryptography.hazmat.primitives import serialization
from twisted.internet import defer, endpoints, interfaces, protocol, reactor, threads
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from chatroom.client.reconnect import RoomTarget
from chatroom.client.session import RoomSession
from chatroom.identity import ClientIdentity, HostIdentity
from chatroom.tls import PinnedClientCreator, client_key, server_options

from .running_host import RunningHostMixin


@implementer(interfaces.IHandshakeListener)
class KeyReader(protocol.Protocol):
    """Server side: records the client key once the handshake is done."""

    def handshakeCompleted(self):
        self.factory.seen.callback(client_key(self.transport))
        self.transport.write(b"ok\n")

    def connectionLost(self, reason):
        self.factory.closed.callback(None)


class KeyReaderFactory(protocol.Factory):
    protocol = KeyReader

    def __init__(self):
        self.seen = defer.Deferred()
        self.closed = defer.Deferred()


class Hello(protocol.Protocol):
    def __init__(self):
        self.done = defer.Deferred()

    def dataReceived(self, data):
        if not self.done.called:
            self.done.callback(data)
        self.transport.loseConnection()


class ClientCertificateTests(TestCase):
    timeout = 30

    def setUp(self):
        self.host = HostIdentity.generate()
        self.factory = KeyReaderFactory()
        self.port = reactor.listenSSL(
            0, self.factory, server_options(self.host), interface="127.0.0.1"
        )
        self.addCleanup(self.port.stopListening)
        self.number = self.port.getHost().port

    @defer.inlineCallbacks
    def twisted_client(self, identity):
        creator = PinnedClientCreator(self.host.public_key, identity=identity)
        endpoint = endpoints.wrapClientTLS(
            creator, endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.number)
        )
        client = yield endpoint.connect(protocol.Factory.forProtocol(Hello))
        data = yield client.done
        self.assertEqual(data, b"ok\n")
        seen = yield self.factory.seen
        yield self.factory.closed
        return seen

    @defer.inlineCallbacks
    def test_chatroom_client_key_is_seen(self):
        identity = ClientIdentity.generate()
        seen = yield self.twisted_client(identity)
        self.assertEqual(seen, identity.public_key)

    @defer.inlineCallbacks
    def test_no_certificate_still_connects(self):
        seen = yield self.twisted_client(None)
        self.assertIsNone(seen)

    def stdlib_client(self, cert_dir=None):
        """A blocking stdlib ssl client (run in a thread): no CA, no name."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if cert_dir is not None:
            context.load_cert_chain(
                os.path.join(cert_dir, "cert.pem"), os.path.join(cert_dir, "key.pem")
            )
        with socket.create_connection(("127.0.0.1", self.number), timeout=10) as s:
            with context.wrap_socket(s) as tls:
                data = tls.recv(16)
                tls.unwrap()
                return data

    def write_pem(self, identity):
        cert_dir = self.mktemp()
        os.makedirs(cert_dir)
        with open(os.path.join(cert_dir, "cert.pem"), "wb") as f:
            f.write(identity.certificate.public_bytes(serialization.Encoding.PEM))
        with open(os.path.join(cert_dir, "key.pem"), "wb") as f:
            f.write(
                identity.private_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        return cert_dir

    @defer.inlineCallbacks
    def test_stdlib_client_with_certificate(self):
        identity = ClientIdentity.generate()
        data = yield threads.deferToThread(self.stdlib_client, self.write_pem(identity))
        self.assertEqual(data, b"ok\n")
        seen = yield self.factory.seen
        self.assertEqual(seen, identity.public_key)

    @defer.inlineCallbacks
    def test_stdlib_client_without_certificate(self):
        data = yield threads.deferToThread(self.stdlib_client)
        self.assertEqual(data, b"ok\n")
        seen = yield self.factory.seen
        self.assertIsNone(seen)

    def test_not_tls(self):
        from twisted.internet.testing import StringTransport

        self.assertIsNone(client_key(StringTransport()))


class SessionPresentsItsKeyTests(RunningHostMixin, TestCase):
    """A session with an identity is known to the host by its key."""

    timeout = 30

    @defer.inlineCallbacks
    def test_host_connection_has_the_client_key(self):
        self.make_data_dir()
        port = yield self.start_host()
        identity = ClientIdentity.generate()
        session = RoomSession(
            reactor,
            RoomTarget(self.identity.public_key, "lobby", ("127.0.0.1:%d" % (port,),)),
            "alice",
            identity=identity,
        )
        yield session.connect()
        self.addCleanup(session.close)
        (connection,) = list(self.service.host.connections)
        self.assertEqual(client_key(connection.transport), identity.public_key)
