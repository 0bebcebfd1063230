"""The client API over real loopback sockets: a host that moves, two clients that follow it."""

import os
import random

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from chatroom.client import errors
from chatroom.client.session import RoomFinder, RoomSession
from chatroom.core.discovery import Announcement
from chatroom.history import HistoryStore
from chatroom.identity import HostIdentity
from chatroom.ircserver import IRCConnection
from chatroom.service import DiscoverySettings, HostService

from .running_host import RunningHostMixin


def quick_policy(attempt):
    """Retry soon: the test should not wait for ClientService's backoff."""
    return 0.2


class Seen:
    """What one session showed its user."""

    def __init__(self):
        self.events = []
        self.status = []
        self._waiters = []

    def on_event(self, event):
        self.events.append(event)
        self._check()

    def on_status(self, text):
        self.status.append(text)
        self._check()

    def _check(self):
        for predicate, d in list(self._waiters):
            if predicate():
                self._waiters.remove((predicate, d))
                d.callback(None)

    def until(self, predicate):
        """A Deferred firing once C{predicate()} is true."""
        if predicate():
            return defer.succeed(None)
        d = defer.Deferred()
        self._waiters.append((predicate, d))
        return d

    def texts(self):
        return [e.text for e in self.events if e.kind == "message"]

    def ordered(self):
        return [(e.seq, e.sender, e.text) for e in self.events if e.kind == "message"]


class MovingHostTests(RunningHostMixin, TestCase):
    """Stop a host, restart it elsewhere with the same key and data: the
    clients follow, resume, and show every message exactly once."""

    timeout = 60

    def setUp(self):
        self.discovery_port = random.randint(20000, 40000)
        self.make_data_dir()

    def start_host(self, announce=True):
        settings = DiscoverySettings(interface="127.0.0.1", port=self.discovery_port)
        return super().start_host(discovery=settings if announce else None)

    def stop_host(self):
        """Stop like the host process does: the service stops (sending the
        goodbye) and its connections drop, as they do when it exits."""
        if self.service is not None:
            for connection in list(self.service.host.connections):
                connection.abort()
        return super().stop_host()

    @defer.inlineCallbacks
    def finder(self):
        finder = RoomFinder(reactor, interface="127.0.0.1", port=self.discovery_port)
        yield finder.start()
        self.addCleanup(finder.stop)
        return finder

    @defer.inlineCallbacks
    def session(self, nick, finder):
        seen = Seen()
        announcement = yield finder.find("lobby")
        session = RoomSession(
            reactor,
            announcement,
            nick,
            finder=finder,
            on_event=seen.on_event,
            on_status=seen.on_status,
            policy=quick_policy,
        )
        yield session.connect()
        self.addCleanup(session.close)
        return session, seen

    @defer.inlineCallbacks
    def raw_client(self, port, nick):
        """A plain protocol client (not a session), for posting."""
        client, _ = yield self.connect(port, nick)
        yield client.join("#lobby")
        return client

    def quit_raw(self, client):
        client.send("QUIT", "done")
        return self.disconnect(client)

    @defer.inlineCallbacks
    def test_follow_resume_exactly_once(self):
        yield self.start_host()
        alice_finder = yield self.finder()
        bob_finder = yield self.finder()
        alice, alice_seen = yield self.session("alice", alice_finder)
        bob, bob_seen = yield self.session("bob", bob_finder)
        first_address = alice.address
        # The joined client relays the room: it holds the announcement.
        self.assertEqual(
            [a.room for a in alice_finder.listener.responder.held()], ["lobby"]
        )

        sent = []
        for n in range(5):
            for session, name in ((alice, "alice"), (bob, "bob")):
                text = "before %s %d" % (name, n)
                sent.append(text)
                event = yield session.say(text)
                self.assertEqual(event.text, text)
                self.assertTrue(event.own)

        # The host stops (goodbye); the clients notice and wait.
        lost = defer.gatherResults(
            [
                seen.until(lambda s=seen: any("Lost" in t for t in s.status))
                for seen in (alice_seen, bob_seen)
            ]
        )
        yield self.stop_host()
        yield lost
        self.assertFalse(alice.joined)
        # Typed while away: kept, and sent once back (after what the room
        # said meanwhile, which is fetched first).
        pending = alice.say("typed while away")
        self.assertEqual(alice.pending, ["typed while away"])

        # Meanwhile the room goes on without them (same key, same data,
        # not announced): they must fetch these from history.
        quiet_port = yield self.start_host(announce=False)
        carol = yield self.raw_client(quiet_port, "carol")
        for n in range(3):
            text = "during carol %d" % (n,)
            sent.append(text)
            carol.send("PRIVMSG", "#lobby", text)
        yield self.quit_raw(carol)
        yield self.stop_host()

        # The host comes back on another port and announces it.
        resumed = defer.gatherResults(
            [
                seen.until(lambda s=seen: any("Reconnected" in t for t in s.status))
                for seen in (alice_seen, bob_seen)
            ]
        )
        new_port = yield self.start_host()
        yield resumed
        sent.append("typed while away")
        event = yield pending
        self.assertEqual((event.text, event.sender), ("typed while away", "alice"))
        self.assertNotEqual(new_port, quiet_port)
        self.assertEqual(alice.address, "127.0.0.1:%d" % (new_port,))
        self.assertNotEqual(alice.address, first_address)
        for seen in (alice_seen, bob_seen):
            (line,) = [t for t in seen.status if "Reconnected" in t]
            self.assertIn("host moved to 127.0.0.1:%d" % (new_port,), line)
            self.assertIn("3 missed messages", line)

        for n in range(5):
            for session, name in ((alice, "alice"), (bob, "bob")):
                text = "after %s %d" % (name, n)
                sent.append(text)
                yield session.say(text)
        yield alice_seen.until(lambda: len(alice_seen.texts()) >= len(sent))
        yield bob_seen.until(lambda: len(bob_seen.texts()) >= len(sent))

        self.assertEqual(alice_seen.texts(), sent)
        self.assertEqual(alice_seen.ordered(), bob_seen.ordered())
        seqs = [seq for seq, _, _ in alice_seen.ordered()]
        self.assertEqual(seqs, sorted(set(seqs)))
        # Every numbered event, joins and quits included, at most once.
        all_seqs = [e.seq for e in alice_seen.events if e.seq is not None]
        self.assertEqual(all_seqs, sorted(set(all_seqs)))


class ImpostorTests(TestCase):
    """A server at the announced address with another key is refused."""

    timeout = 30

    @defer.inlineCallbacks
    def test_key_mismatch_no_irc_bytes(self):
        data_dir = self.mktemp()
        os.makedirs(data_dir)
        impostor = HostService(
            reactor,
            HostIdentity.generate(),
            HistoryStore(os.path.join(data_dir, "h.sqlite3")),
            ["lobby"],
            tls_port=0,
            tls_interface="127.0.0.1",
        )
        impostor.startService()
        self.addCleanup(impostor.stopService)
        (port,) = yield impostor.listening_ports()
        received = []
        original = IRCConnection.dataReceived
        self.patch(
            IRCConnection,
            "dataReceived",
            lambda self, data: (received.append(data), original(self, data)),
        )
        room_key = HostIdentity.generate()
        announcement = Announcement.sign(
            room_key.private_key,
            "lobby",
            ["127.0.0.1:%d" % (port.getHost().port,)],
            counter=1,
            lifetime=60,
        )
        session = RoomSession(reactor, announcement, "alice")
        failure = yield self.assertFailure(session.connect(), errors.KeyMismatch)
        self.assertIn(room_key.short_fingerprint, str(failure))
        self.assertIn("nothing was sent", str(failure))
        self.assertEqual(received, [])
        yield session.close()

    @defer.inlineCallbacks
    def test_unreachable(self):
        """Nothing listens at the address: one sentence naming it."""
        from twisted.internet.protocol import Factory

        port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        number = port.getHost().port
        yield port.stopListening()
        announcement = Announcement.sign(
            HostIdentity.generate().private_key,
            "lobby",
            ["127.0.0.1:%d" % (number,)],
            counter=1,
            lifetime=60,
        )
        session = RoomSession(reactor, announcement, "alice")
        failure = yield self.assertFailure(session.connect(), errors.HostUnreachable)
        self.assertIn("127.0.0.1:%d" % (number,), str(failure))
        yield session.close()
