"""Real TLS on 127.0.0.1: two clients, total order, echo, history across a restart."""

import socket
import ssl

from twisted.internet import defer, threads
from twisted.trial.unittest import TestCase

from chatroom.client.protocol import sequence_of
from chatroom.identity import HostIdentity
from chatroom.ircserver import IRCConnection

from .running_host import RunningHostMixin


class TLSRoomTests(RunningHostMixin, TestCase):
    """A host with its TLS listener on loopback and real clients."""

    timeout = 60

    def setUp(self):
        self.make_data_dir()

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
        # Both waits start before either is awaited: bob may have everything
        # before alice does.
        yield defer.gatherResults(
            [
                alice.wait_for(lambda m: len(alice_saw.messages) == 40),
                bob.wait_for(lambda m: len(bob_saw.messages) == 40),
            ]
        )
        alice_order = [(sequence_of(m), m.params[1]) for m in alice_saw.messages]
        bob_order = [(sequence_of(m), m.params[1]) for m in bob_saw.messages]
        self.assertEqual(alice_order, bob_order)
        self.assertEqual(
            [seq for seq, _ in alice_order], sorted(seq for seq, _ in alice_order)
        )
        self.assertEqual(
            [t for _, t in alice_order if t.startswith("a")],
            ["a%d" % (n,) for n in range(20)],
        )

        yield self.disconnect(alice)
        yield self.disconnect(bob)
        yield self.stop_host()
        port = yield self.start_host()
        carol, carol_saw = yield self.connect(port, "carol")
        history = yield carol.history("#lobby", "LATEST", "*")
        self.assertEqual(
            [(sequence_of(m), m.params[1]) for m in history if m.command == "PRIVMSG"],
            alice_order,
        )
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
        self.patch(
            IRCConnection,
            "dataReceived",
            lambda self, data: (received.append(data), original(self, data)),
        )
        other = HostIdentity.generate().public_key
        failure = yield self.assertFailure(
            self.connect(port, "mallory", other), Exception
        )
        self.assertIn("certificate verify failed", str(failure))
        self.assertEqual(received, [])

    @defer.inlineCallbacks
    def test_stop_closes_clients(self):
        """Stopping the host tells each client why and closes it."""
        port = yield self.start_host()
        alice, _ = yield self.connect(port, "alice")
        error = alice.wait_for(lambda m: m.command == "ERROR")
        error.addErrback(lambda f: None)
        yield self.stop_host()
        message = yield error
        self.assertIn("Server shutting down", message.params[0])


class TLSPolicyTests(RunningHostMixin, TestCase):
    """The host's TLS settings, seen by a standard-library client."""

    timeout = 60

    def setUp(self):
        self.make_data_dir()

    def handshake(self, port, minimum, maximum, ciphers=None):
        """Handshake in a thread (the host runs in this one); the version."""

        def run():
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.minimum_version = minimum
            context.maximum_version = maximum
            if ciphers:
                context.set_ciphers(ciphers)
            with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
                with context.wrap_socket(raw) as tls:
                    return tls.version(), tls.cipher()[0]

        return threads.deferToThread(run)

    @defer.inlineCallbacks
    def test_versions_and_suites(self):
        port = yield self.start_host()
        version, cipher = yield self.handshake(
            port, ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3
        )
        self.assertEqual(version, "TLSv1.3")
        version, cipher = yield self.handshake(
            port, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2
        )
        self.assertEqual(version, "TLSv1.2")
        self.assertIn("ECDHE", cipher)
        self.assertIn("GCM", cipher)
        yield self.assertFailure(
            self.handshake(
                port,
                ssl.TLSVersion.TLSv1_2,
                ssl.TLSVersion.TLSv1_2,
                "AES128-SHA:AES256-SHA:ECDHE-ECDSA-AES128-SHA",
            ),
            ssl.SSLError,
        )
