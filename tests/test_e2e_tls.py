"""Real TLS on 127.0.0.1: two clients, total order, echo, history across a restart."""

import os

from twisted.internet import defer, endpoints, protocol, reactor
from twisted.trial.unittest import TestCase

from chatroom.client.protocol import RoomClientProtocol, sequence_of
from chatroom.history import HistoryStore
from chatroom.host import Limits
from chatroom.identity import HostIdentity, load_or_create
from chatroom.ircserver import IRCConnection
from chatroom.service import HostService, data_paths
from chatroom.tls import PinnedClientCreator


class Recorder:
    """A client listener that keeps every room message."""

    def __init__(self):
        self.messages = []

    def message_received(self, message):
        if message.command == "PRIVMSG" and "batch" not in message.tags:
            self.messages.append(message)

    def connection_lost(self, reason):
        pass


class TLSRoomTests(TestCase):
    """A host with its TLS listener on loopback and real clients."""

    timeout = 60

    def setUp(self):
        self.data_dir = self.mktemp()
        os.makedirs(self.data_dir)
        self.key_path, self.db_path = data_paths(self.data_dir)
        self.identity = load_or_create(self.key_path)
        self.service = None

    @defer.inlineCallbacks
    def start_host(self):
        self.service = HostService(
            reactor, self.identity, HistoryStore(self.db_path), ["lobby"],
            tls_port=0, tls_interface="127.0.0.1", limits=Limits(flood_rate=0))
        self.service.startService()
        self.addCleanup(self.stop_host)
        (port,) = yield self.service.listening_ports()
        return port.getHost().port

    def stop_host(self):
        service, self.service = self.service, None
        if service is not None and service.running:
            return service.stopService()

    @defer.inlineCallbacks
    def connect(self, port, nick, public_key=None):
        recorder = Recorder()
        creator = PinnedClientCreator(public_key or self.identity.public_key)
        endpoint = endpoints.wrapClientTLS(
            creator, endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port))
        client = yield endpoint.connect(protocol.Factory.forProtocol(
            lambda: RoomClientProtocol(nick, recorder)))
        self.addCleanup(self.disconnect, client)
        yield client.registered
        return client, recorder

    def disconnect(self, client):
        if client.transport.connected:
            lost = defer.Deferred()
            client.listener.connection_lost = lambda reason: lost.callback(None)
            client.transport.loseConnection()
            return lost

    @defer.inlineCallbacks
    def test_order_echo_and_history_across_restart(self):
        port = yield self.start_host()
        alice, alice_saw = yield self.connect(port, "alice")
        bob, bob_saw = yield self.connect(port, "bob")
        self.assertIn("echo-message", alice.caps)
        yield alice.join("#lobby")
        yield bob.join("#lobby")
        for n in range(20):
            alice.send("PRIVMSG", "#lobby", "a%d" % (n,))
            bob.send("PRIVMSG", "#lobby", "b%d" % (n,))
        yield alice.wait_for(lambda m: len(alice_saw.messages) == 40)
        yield bob.wait_for(lambda m: len(bob_saw.messages) == 40)
        alice_order = [(sequence_of(m), m.params[1]) for m in alice_saw.messages]
        bob_order = [(sequence_of(m), m.params[1]) for m in bob_saw.messages]
        self.assertEqual(alice_order, bob_order)
        self.assertEqual([seq for seq, _ in alice_order],
                         sorted(seq for seq, _ in alice_order))
        self.assertEqual([t for _, t in alice_order if t.startswith("a")],
                         ["a%d" % (n,) for n in range(20)])

        yield self.disconnect(alice)
        yield self.disconnect(bob)
        yield self.stop_host()
        port = yield self.start_host()
        carol, carol_saw = yield self.connect(port, "carol")
        history = yield carol.history("#lobby", "LATEST", "*")
        self.assertEqual([(sequence_of(m), m.params[1]) for m in history
                          if m.command == "PRIVMSG"], alice_order)
        self.assertEqual(history[-1].command, "QUIT")
        yield carol.join("#lobby")
        carol.send("PRIVMSG", "#lobby", "after restart")
        yield carol.wait_for(lambda m: carol_saw.messages)
        self.assertGreater(sequence_of(carol_saw.messages[0]), alice_order[-1][0])

    @defer.inlineCallbacks
    def test_wrong_key_refused_before_irc(self):
        """A host whose key is not the pinned one never gets an IRC byte."""
        port = yield self.start_host()
        received = []
        original = IRCConnection.dataReceived
        self.patch(IRCConnection, "dataReceived",
                   lambda self, data: (received.append(data), original(self, data)))
        other = HostIdentity.generate().public_key
        failure = yield self.assertFailure(self.connect(port, "mallory", other),
                                           Exception)
        self.assertIn("certificate verify failed", str(failure))
        self.assertEqual(received, [])
