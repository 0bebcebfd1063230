"""The wired host service: listeners, announcing, the announcement counter."""

import os
import random

from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatroom.core.directory import Outcome
from chatroom.discovery import DiscoveryService, ListenerProtocol
from chatroom.history import HistoryStore, ReservedCounter
from chatroom.identity import HostIdentity
from chatroom.service import DiscoverySettings, HostService


class ReservedCounterTests(SynchronousTestCase):
    """The announcement counter T only ever increases."""

    def test_increases_across_restarts(self):
        path = self.mktemp()
        store = HistoryStore(path)
        counter = ReservedCounter(store, "T", block=4)
        first = [counter() for _ in range(6)]
        store.close()
        store = HistoryStore(path)
        self.addCleanup(store.close)
        again = ReservedCounter(store, "T", block=4)
        later = [again() for _ in range(3)]
        values = first + later
        self.assertEqual(values, sorted(set(values)))
        self.assertGreater(later[0], first[-1])


class ReservedCounterCrashTests(SynchronousTestCase):
    """A crash (no close, no clean stop) never lets T go back."""

    def test_kill_nine(self):
        path = self.mktemp()
        crashed = HistoryStore(path)
        counter = ReservedCounter(crashed, "announcement", block=64)
        handed_out = [counter() for _ in range(70)]
        # The process dies here: the store is never closed.  A new process
        # opens the same file.
        store = HistoryStore(path)
        self.addCleanup(store.close)
        self.addCleanup(crashed.close)
        self.assertGreater(ReservedCounter(store, "announcement")(), max(handed_out))


class ListeningMixin:
    """A discovery listener on 127.0.0.1 and a random group port."""

    timeout = 30

    @defer.inlineCallbacks
    def start_listener(self):
        """Fires with (settings for a host, the listener protocol)."""
        # A random group port so parallel runs on one machine do not meet.
        port = random.randint(20000, 40000)
        settings = DiscoverySettings(interface="127.0.0.1", port=port)
        listener = ListenerProtocol(reactor, settings.group, port, "127.0.0.1")
        listening = DiscoveryService(reactor, listener)
        listening.startService()
        self.addCleanup(listening.stopService)
        yield listener.ready
        return settings, listener


class AnnouncingHostTests(ListeningMixin, TestCase):
    """A host on 127.0.0.1 announces its rooms where a listener hears them."""

    @defer.inlineCallbacks
    def test_listener_finds_host_then_goodbye(self):
        settings, listener = yield self.start_listener()

        identity = HostIdentity.generate()
        data_dir = self.mktemp()
        os.makedirs(data_dir)
        host = HostService(
            reactor,
            identity,
            HistoryStore(os.path.join(data_dir, "h.sqlite3")),
            ["lobby", "Dev"],
            tls_port=0,
            tls_interface="127.0.0.1",
            discovery=settings,
        )
        host.startService()
        (tls_port,) = yield host.listening_ports()
        result = yield listener.search("lobby")
        self.assertTrue(result.found)
        announcement = result.announcement
        self.assertEqual(announcement.q, identity.public_key)
        self.assertEqual(
            [str(a) for a in announcement.addresses],
            ["127.0.0.1:%d" % (tls_port.getHost().port,)],
        )

        gone = defer.Deferred()

        def changed(change):
            if not listener.directory.find(reactor.seconds()) and not gone.called:
                gone.callback(change)

        listener.on_change = changed
        yield host.stopService()
        # The goodbyes are datagrams: wait until the listener has read them
        # and the directory is empty.
        change = yield gone
        self.assertEqual(change.outcome, Outcome.REMOVED)


class OpenedRoomAnnouncedTests(ListeningMixin, TestCase):
    """A room a user opens is announced at once."""

    @defer.inlineCallbacks
    def test_opened_room_found(self):
        from chatroom.host import Limits

        settings, listener = yield self.start_listener()

        host = HostService(
            reactor,
            HostIdentity.generate(),
            HistoryStore(":memory:"),
            [],
            tls_port=0,
            tls_interface="127.0.0.1",
            limits=Limits(open_rooms=True),
            discovery=settings,
        )
        host.startService()
        self.addCleanup(host.stopService)
        yield host.listening_ports()
        heard = defer.Deferred()
        listener.on_change = lambda change: (
            change.entry.announcement.room == "fresh"
            and not heard.called
            and heard.callback(change)
        )
        host.host.open_room("fresh")
        change = yield heard
        self.assertEqual(change.outcome, Outcome.ADDED)


class RetentionTests(SynchronousTestCase):
    """--history-keep and --history-days applied by the hourly upkeep."""

    def test_keep_count(self):
        from chatroom.core.room import Event

        store = HistoryStore(":memory:")
        service = HostService(
            reactor,
            HostIdentity.generate(),
            store,
            ["lobby"],
            tls_port=None,
            history_keep=2,
        )
        store.append(
            [
                Event(
                    room="lobby",
                    seq=n,
                    time_ms=n,
                    command="PRIVMSG",
                    source="a!u@h",
                    params=("#lobby", str(n)),
                )
                for n in range(1, 6)
            ]
        )
        service.maintain()
        self.assertEqual(
            [e.seq for e in store.between("lobby", 0, 9, 9, False, True)], [4, 5]
        )
        store.close()

    def test_nothing_without_options(self):
        store = HistoryStore(":memory:")
        service = HostService(
            reactor, HostIdentity.generate(), store, ["lobby"], tls_port=None
        )
        self.assertEqual(service.prune(), 0)
        store.close()


class CounterLogTests(SynchronousTestCase):
    """Once a minute, one log line with the counters that moved."""

    def test_one_line_per_minute_when_counters_move(self):
        from twisted.internet.task import Clock
        from twisted.logger import globalLogPublisher

        from chatroom.service import COUNTERS_INTERVAL

        clock = Clock()
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        store = HistoryStore(":memory:")
        service = HostService(
            clock, HostIdentity.generate(), store, ["lobby"], tls_port=None
        )
        service.startService()
        self.addCleanup(service.stopService)

        def lines():
            return [
                e["counters"]
                for e in events
                if "counters" in e
                and e.get("log_namespace", "").startswith("chatroom.service")
            ]

        self.assertEqual(lines(), [])
        service.host.count("recvq-exceeded")
        service.host.count("recvq-exceeded")
        service.host.count("handshakes-paused")
        clock.advance(COUNTERS_INTERVAL)
        self.assertEqual(lines(), ["handshakes-paused +1 (1), recvq-exceeded +2 (2)"])
        clock.advance(COUNTERS_INTERVAL)
        self.assertEqual(len(lines()), 1)
        service.host.count("recvq-exceeded")
        clock.advance(COUNTERS_INTERVAL)
        self.assertEqual(lines()[-1], "recvq-exceeded +1 (3)")


class ListeningServiceTests(TestCase):
    """The listener service exposes its port without private attributes."""

    @defer.inlineCallbacks
    def test_port_and_stop(self):
        from twisted.internet import endpoints, protocol

        from chatroom.service import ListeningService

        seen = []
        listener = ListeningService(
            endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
            protocol.Factory(),
            "test",
            on_port=lambda p: seen.append(("on", p)),
            on_stop=lambda p: seen.append(("off", p)),
        )
        waiting = listener.when_listening()
        listener.privilegedStartService()
        listener.startService()
        port = yield waiting
        self.assertIs((yield listener.when_listening()), port)
        yield listener.stopService()
        self.assertFalse(port.connected)
        self.assertEqual(seen, [("on", port), ("off", port)])

    def test_failure_raises_at_start(self):
        from twisted.internet import endpoints, protocol
        from twisted.internet.error import CannotListenError

        from chatroom.service import ListeningService

        holder = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        port = self.successResultOf(holder.listen(protocol.Factory()))
        self.addCleanup(port.stopListening)
        listener = ListeningService(
            endpoints.TCP4ServerEndpoint(
                reactor, port.getHost().port, interface="127.0.0.1"
            ),
            protocol.Factory(),
            "taken",
        )
        self.assertRaises(CannotListenError, listener.privilegedStartService)
        self.assertTrue(listener.failed)
        self.failureResultOf(listener.when_listening(), CannotListenError)


class _GroupListener(DatagramProtocol):
    """Joins a group on 127.0.0.1 and hands each datagram to a Deferred."""

    def __init__(self, group):
        self.group = group
        self.waiting = []

    def startProtocol(self):
        self.transport.setOutgoingInterface("127.0.0.1")
        self.joined = self.transport.joinGroup(self.group, "127.0.0.1")

    def datagramReceived(self, data, address):
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(data)

    def next(self):
        d = defer.Deferred()
        self.waiting.append(d)
        return d


class FanoutServiceTests(ListeningMixin, TestCase):
    """--fanout on loopback: the room is announced with the multicast flag,
    and a member that takes multicast delivery is sent datagrams that a
    listener on the group receives (127.0.0.1 only)."""

    @defer.inlineCallbacks
    def test_datagram_reaches_the_group(self):
        from chatroom.core.fanout import Datagram, KeyGrant, RoomIdentity, open_datagram
        from chatroom.core.ircline import parse_line
        from chatroom.wellknown import FANOUT_CAPABILITY
        from chatroom.service import FanoutSettings

        from .fakes import FakeClient

        settings, listener = yield self.start_listener()
        fanout = FanoutSettings(interface="127.0.0.1", port=settings.port + 1)
        group = _GroupListener(fanout.group)
        # Bound on every address (a group's datagrams are addressed to the
        # group), joined on 127.0.0.1 only.
        port = reactor.listenMulticast(fanout.port, group, listenMultiple=True)
        self.addCleanup(port.stopListening)
        yield group.joined
        identity = HostIdentity.generate()
        service = HostService(
            reactor,
            identity,
            HistoryStore(":memory:"),
            ["lobby"],
            tls_port=0,
            tls_interface="127.0.0.1",
            discovery=settings,
            fanout=fanout,
        )
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        yield service.listening_ports()
        result = yield listener.search("lobby")
        self.assertTrue(result.announcement.multicast_delivery)

        member = FakeClient.__new__(FakeClient)
        member.host = service.host
        from twisted.internet.testing import StringTransport

        member.transport = StringTransport()
        from chatroom.ircserver import IRCConnection

        member.protocol = IRCConnection(service.host)
        member.protocol.makeConnection(member.transport)
        member.protocol.dataReceived(
            b"CAP REQ :message-tags server-time echo-message "
            + FANOUT_CAPABILITY.encode()
            + b"\r\nNICK a\r\nUSER a 0 * :a\r\nCAP END\r\n"
            b"JOIN #lobby\r\n"
        )
        yield deferLater(reactor, 0, lambda: None)
        lines = [
            parse_line(line) for line in member.transport.value().split(b"\r\n") if line
        ]
        grant = KeyGrant.from_params(lines[-1].params)
        self.assertEqual((grant.group, grant.port), (fanout.group, fanout.port))
        self.addCleanup(member.protocol.connectionLost)
        received = group.next()
        member.protocol.dataReceived(b"PRIVMSG #lobby :over the air\r\n")
        texts = []
        for _ in range(10):  # heartbeats may come first; bounded
            data = yield received
            received = group.next()
            opened = open_datagram(
                Datagram.from_bytes(data),
                RoomIdentity(identity.public_key, "lobby"),
                grant.epoch_key,
            )
            texts += [parse_line(line).params[-1] for line in opened.lines if line]
            if texts:
                break
        self.assertEqual(texts, ["over the air"])


class UpkeepFailureTests(SynchronousTestCase):
    """A failing upkeep is one log line and a counter, and runs again."""

    def test_failure_logged_counted_and_run_again(self):
        from twisted.internet.task import Clock
        from twisted.logger import globalLogPublisher

        from chatroom.host import Limits
        from chatroom.service import MAINTENANCE_INTERVAL

        clock = Clock()
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        store = HistoryStore(":memory:")
        self.addCleanup(store.close)
        # What "--room-idle-days inf" used to reach: int(inf) raises.
        service = HostService(
            clock,
            HostIdentity.generate(),
            store,
            ["lobby"],
            tls_port=None,
            limits=Limits(open_rooms=True, room_idle_seconds=float("inf")),
            history_keep=1,
        )
        pruned = []
        service.prune = lambda: pruned.append(clock.seconds())
        service.startService()
        self.addCleanup(service.stopService)

        def failures():
            return [
                e
                for e in events
                if e.get("log_namespace", "").startswith("chatroom.service")
                and "Upkeep failed" in e.get("log_format", "")
            ]

        self.assertEqual(len(failures()), 1)
        self.assertIn("OverflowError", failures()[0]["error"])
        self.assertNotIn("log_failure", failures()[0])
        self.assertEqual(service.host.counters["upkeep-failures"], 1)
        # The other step still ran, and the next hour runs again.
        self.assertEqual(pruned, [0])
        clock.advance(MAINTENANCE_INTERVAL)
        self.assertEqual(service.host.counters["upkeep-failures"], 2)
        self.assertEqual(pruned, [0, MAINTENANCE_INTERVAL])


class UpkeepLogTests(SynchronousTestCase):
    """Pruning and removing idle opened rooms are logged and counted."""

    def setUp(self):
        from twisted.internet.task import Clock
        from twisted.logger import globalLogPublisher

        self.clock = Clock()
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.store = HistoryStore(":memory:")
        self.addCleanup(self.store.close)

    def lines(self, word):
        return [
            e
            for e in self.events
            if e.get("log_namespace", "").startswith("chatroom.service")
            and e.get("log_format", "").startswith(word)
        ]

    def test_pruning(self):
        from chatroom.core.room import Event

        service = HostService(
            self.clock,
            HostIdentity.generate(),
            self.store,
            ["lobby", "dev", "quiet"],
            tls_port=None,
            history_keep=2,
        )
        self.store.append(
            [
                Event(
                    room=room,
                    seq=n,
                    time_ms=n,
                    command="PRIVMSG",
                    source="a!u@h",
                    params=("#" + room, str(n)),
                )
                for room, count in (("lobby", 5), ("dev", 3), ("quiet", 1))
                for n in range(1, count + 1)
            ]
        )
        service.maintain()
        (line,) = self.lines("Pruned")
        self.assertEqual((line["events"], line["rooms"], line["keep"]), (4, 2, 2))
        self.assertEqual(service.host.counters["history-pruned"], 4)
        # A run that deletes nothing says nothing.
        service.maintain()
        self.assertEqual(len(self.lines("Pruned")), 1)
        self.assertEqual(service.host.counters["history-pruned"], 4)

    def test_idle_rooms_removed(self):
        from chatroom.host import Limits

        service = HostService(
            self.clock,
            HostIdentity.generate(),
            self.store,
            ["lobby"],
            tls_port=None,
            limits=Limits(open_rooms=True, room_idle_seconds=86400),
        )
        service.host.open_room("old")
        service.host.open_room("older")
        self.clock.advance(86400 / 2)
        service.host.open_room("fresh")
        service.maintain()
        self.assertEqual(self.lines("Removed"), [])
        self.clock.advance(86400)
        service.maintain()
        (line,) = self.lines("Removed")
        self.assertEqual(line["count"], 2)
        self.assertEqual(line["rooms"], "#old (idle 1.5 days), #older (idle 1.5 days)")
        self.assertEqual(service.host.counters["rooms-removed"], 2)
        self.assertEqual(sorted(service.host.rooms), ["fresh", "lobby"])
        self.assertEqual(self.lines("Pruned"), [])
