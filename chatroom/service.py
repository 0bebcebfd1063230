# -*- test-case-name: tests.test_service -*-
"""The host service: the one place where a room host is wired together.

Store, identity, rooms, listeners and timers are built here and nowhere
else; every part receives the reactor it should use.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Sequence

import attrs
from twisted.application import internet, service
from twisted.internet import defer, endpoints
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatroom.access import AccessFileError, PrivateRooms
from chatroom.core.addresses import is_loopback
from chatroom.eagertcp import EagerTCP4ServerEndpoint
from chatroom.errors import EndpointError
from chatroom.handshakes import HandshakeLimitFactory, HandshakeLimits
from chatroom.history import HistoryStore, ReservedCounter
from chatroom.host import Limits, RoomHost
from chatroom.hosttls import HostTLSFactory
from chatroom.identity import HostIdentity
from chatroom.ircserver import IRCFactory
from chatroom.tls import server_options
from chatroom.wellknown import (
    DISCOVERY_GROUP,
    DISCOVERY_PORT,
    DISCOVERY_TTL,
    FANOUT_GROUP,
    FANOUT_PORT,
    FANOUT_TTL,
)

if TYPE_CHECKING:
    from chatroom.discovery import HostedRoom, HostProtocol
    from chatroom.core.room import Room
    from chatroom.fanout import FanoutSocket

#: How often old history is pruned and idle opened rooms removed, in seconds.
MAINTENANCE_INTERVAL = 3600.0

#: How often the counters that moved are logged, in seconds.
COUNTERS_INTERVAL = 60.0


@attrs.frozen
class DiscoverySettings:
    """Where and how a host announces its rooms.

    @ivar interface: the address of the interface to announce on; always
        explicit, since leaving it to the kernel sends to the default route.
    @ivar addresses: the room server addresses to announce (C{host:port});
        empty means the TLS listener's address and actual port.
    """

    interface: str
    group: str = DISCOVERY_GROUP
    port: int = DISCOVERY_PORT
    ttl: int = DISCOVERY_TTL
    addresses: tuple[str, ...] = ()


@attrs.frozen
class FanoutSettings:
    """Where and how a host sends room events to multicast members
    (C{docs/protocol-fanout.rst}, "Transport").

    @ivar interface: the address of the interface datagrams leave through;
        always explicit, as for discovery.
    @ivar ttl: router hops a datagram may take.
    """

    interface: str = "127.0.0.1"
    group: str = FANOUT_GROUP
    port: int = FANOUT_PORT
    ttl: int = FANOUT_TTL


_WILDCARDS = ("", "0.0.0.0", "::")

# serverFromString arguments that name the certificate of an ssl: listener.
_CERTIFICATE_ARGUMENTS = ("privateKey", "certKey")


@implementer(IStreamServerEndpoint)
class HostTLSServerEndpoint:
    """TLS with the host's own certificate over any stream server endpoint.

    This is what C{reactor.listenSSL} does over TCP (a
    L{TLSMemoryBIOFactory} around the factory), for any endpoint: TCP, or
    a socket inherited from systemd; the TLS layer is the host's own
    (L{chatroom.hosttls.HostTLSFactory}: it writes at once, and closes
    while a producer is registered).

    @param endpoint: the stream server endpoint to listen on.
    @param options: the TLS server options (L{chatroom.tls.server_options}).
    """

    def __init__(self, endpoint: Any, options: Any) -> None:
        self.endpoint = endpoint
        self.options = options

    def listen(self, factory: Any) -> defer.Deferred:
        """Listen on the wrapped endpoint with C{factory} inside TLS."""
        return self.endpoint.listen(HostTLSFactory(self.options, False, factory))


def _arguments(description: str) -> list[str]:
    """The colon-separated parts of an endpoint description (C{\\:} escapes)."""
    return re.split(r"(?<!\\):", description)


def server_endpoint(reactor: Any, description: str, tls_options: Any) -> Any:
    """The server endpoint a C{--listen} or C{--tls-endpoint} description names.

    Any Twisted server endpoint string works.  An C{ssl:} listener that
    names no certificate (no C{privateKey} or C{certKey}) uses the host's
    own key and certificate, bound to Q like the main port, instead of
    Twisted's default C{server.pem}.

    @raise EndpointError: one sentence saying why C{description} cannot be
        used.
    """
    parts = _arguments(description)
    try:
        if parts[0] == "ssl" and not any(
            part.split("=", 1)[0] in _CERTIFICATE_ARGUMENTS for part in parts[1:]
        ):
            inner = endpoints.serverFromString(reactor, ":".join(["tcp", *parts[1:]]))
            return HostTLSServerEndpoint(inner, tls_options)
        return endpoints.serverFromString(reactor, description)
    except (IndexError, KeyError):
        if parts[0] == "systemd":
            raise EndpointError(
                "%s names a socket systemd did not pass (LISTEN_FDS); start "
                "the host from its .socket unit, or choose another "
                "endpoint." % (description,)
            ) from None
        raise EndpointError(
            "%s is not a usable listener description." % (description,)
        ) from None
    except (ValueError, TypeError) as e:
        raise EndpointError(
            "%s is not a usable listener description (%s); see the endpoint "
            "strings of twisted.internet.endpoints.serverFromString." % (description, e)
        ) from None
    except OSError as e:
        raise EndpointError(
            "%s cannot be used: %s (%s)."
            % (description, e.strerror or e, e.filename or "")
        ) from None
    except Exception as e:
        # Endpoint parsers are plugins and raise what they like (a PEM file
        # that is not a key raises OpenSSL's error): still one sentence.
        raise EndpointError(
            "%s cannot be used (%s: %s)." % (description, type(e).__name__, e)
        ) from None


class ListeningService(service.Service):
    """Listens on one endpoint while running, stops listening when stopped.

    Like Twisted's C{StreamServerEndpointService}, but a port that cannot
    be opened makes L{privilegedStartService} raise (so the host does not
    run without its listener), and the port is public through
    L{when_listening}.

    @param description: what to call the listener in messages.
    @param on_port: called with the port once listening, if given.
    @param on_stop: called with the port when it stops listening, if given.
    """

    def __init__(
        self,
        endpoint: Any,
        factory: Any,
        description: str,
        on_port: Any = None,
        on_stop: Any = None,
    ) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.description = description
        self.on_port = on_port
        self.on_stop = on_stop
        self.port: Any = None
        self._listening: defer.Deferred | None = None
        self._waiters: list[defer.Deferred] = []
        self._failure: Failure | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()
        if self._failure is not None:
            self._failure.raiseException()

    def startService(self) -> None:
        super().startService()
        self._listen()

    def _listen(self) -> None:
        if self._listening is not None:
            return
        self._listening = self.endpoint.listen(self.factory)
        self._listening.addCallbacks(self._listened, self._failed)

    def _listened(self, port: Any) -> None:
        self.port = port
        if self.on_port is not None:
            self.on_port(port)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(port)

    def _failed(self, failure: Failure) -> None:
        self._failure = failure
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(failure)

    @property
    def failed(self) -> bool:
        """Whether listening failed."""
        return self._failure is not None

    def when_listening(self) -> defer.Deferred:
        """Fires with the L{IListeningPort} once listening (or the error)."""
        if self.port is not None:
            return defer.succeed(self.port)
        if self._failure is not None:
            return defer.fail(self._failure)
        waiter: defer.Deferred = defer.Deferred()
        self._waiters.append(waiter)
        return waiter

    def stopService(self) -> Any:
        super().stopService()
        listening, self._listening = self._listening, None
        port, self.port = self.port, None
        self._failure = None
        if port is not None:
            if self.on_stop is not None:
                self.on_stop(port)
            return port.stopListening()
        if listening is not None:
            listening.cancel()
        return None


class HostService(service.MultiService):
    """A running room host: TLS listener, extra listeners, pruning.

    @param reactor: the reactor to listen with and to use as clock.
    @param identity: the host's L{HostIdentity}.
    @param store: the opened L{HistoryStore}; closed when the service stops.
    @param rooms: room names to host.
    @param tls_port: TCP port of the TLS listener (0: any free port;
        C{None}: no TLS listener).
    @param tls_interface: address the TLS listener binds to (C{""}: all IPv4).
    @param tls_endpoint: a server endpoint description for the TLS listener
        (such as C{systemd:domain=INET:index=0}), used instead of
        C{tls_port} and C{tls_interface}.
    @param listen: extra Twisted server endpoint descriptions; C{ssl:}
        ones without a certificate use the host's (see L{server_endpoint}).
    @param handshakes: the cap on TLS handshakes in progress.
    @param discovery: where to announce the rooms, or C{None} not to.
    @param fanout: how to offer multicast delivery, or C{None} not to.


    @param private: the access rule of the rooms (L{PrivateRooms}) when
        the rooms given are private, or C{None}.
    @raise EndpointError: a description cannot be used.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        identity: HostIdentity,
        store: HistoryStore,
        rooms: Sequence[str],
        tls_port: int | None = 6697,
        tls_interface: str = "",
        listen: Sequence[str] = (),
        limits: Limits = Limits(),
        server_name: str | None = None,
        motd: Sequence[str] = (),
        history_keep: int | None = None,
        history_days: float | None = None,
        discovery: DiscoverySettings | None = None,
        tls_endpoint: str | None = None,
        handshakes: HandshakeLimits = HandshakeLimits(),
        fanout: FanoutSettings | None = None,
        private: PrivateRooms | None = None,
        operators: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.discovery = discovery
        self.announcer: HostProtocol | None = None
        self.reactor = reactor
        self.identity = identity
        self.store = store
        self.history_keep = history_keep
        self.history_days = history_days
        name = server_name or identity.short_fingerprint + ".chatroom"
        self.host = RoomHost(
            store,
            reactor,
            name,
            rooms,
            limits,
            motd,
            observer=self,
            operators=operators,
        )
        self.fanout = fanout
        self.fanout_socket: FanoutSocket | None = None
        if fanout is not None:
            # Imported here: a host without --fanout never loads fan-out.
            from chatroom.fanout import FanoutSocket, HostFanout

            self.fanout_socket = FanoutSocket(
                fanout.interface, fanout.group, fanout.port, fanout.ttl
            )
            self.host.fanout = HostFanout(
                self.host, identity.private_key, identity.public_key, self.fanout_socket
            )

        self.private = private
        self._private_keys = frozenset(self.host.rooms) if private else frozenset()
        self._apply_access()
        self.factory = HandshakeLimitFactory(
            IRCFactory(self.host), handshakes, reactor, count=self.host.count
        )
        self.listeners: list[ListeningService] = []
        self.has_tls_listener = tls_endpoint is not None or tls_port is not None
        tls = server_options(identity)
        if tls_endpoint is not None:
            inner = server_endpoint(reactor, tls_endpoint, tls)
            if isinstance(inner, HostTLSServerEndpoint):
                inner = inner.endpoint  # "ssl:" here means the same as "tcp:"
            elif isinstance(inner, endpoints.SSL4ServerEndpoint):
                raise EndpointError(
                    "--tls-endpoint %s names its own certificate; the main "
                    "port always serves the host's, bound to its key: give a "
                    "tcp: or systemd: endpoint, or use --listen for another "
                    "certificate." % (tls_endpoint,)
                )
            self._listen(HostTLSServerEndpoint(inner, tls), tls_endpoint)
        elif tls_port is not None:
            self._listen(
                HostTLSServerEndpoint(
                    # Sends at once when nothing is queued (docs/decisions.rst).
                    EagerTCP4ServerEndpoint(reactor, tls_port, interface=tls_interface),
                    tls,
                ),
                "TLS port %d" % (tls_port,),
            )
        for description in listen:
            self._listen(server_endpoint(reactor, description, tls), description)
        # Hourly upkeep, and once at start: retention and idle opened rooms.
        timer = internet.TimerService(MAINTENANCE_INTERVAL, self.maintain)
        timer.clock = reactor
        timer.setServiceParent(self)
        # Once a minute, the counters that moved, for the operator.
        counters = internet.TimerService(COUNTERS_INTERVAL, self.log_counters)
        counters.clock = reactor
        counters.setServiceParent(self)
        self._logged_counters: dict[str, int] = {}

    def _listen(self, endpoint: Any, description: str) -> None:
        listener = ListeningService(
            endpoint,
            self.factory,
            description,
            on_port=self.factory.add_port,
            on_stop=self.factory.remove_port,
        )
        listener.setServiceParent(self)
        self.listeners.append(listener)

    def listening_ports(self) -> defer.Deferred:
        """Fires with the L{IListeningPort} of every listener, once started;
        the TLS listener's first."""
        return defer.gatherResults(
            [listener.when_listening() for listener in self.listeners]
        )

    def _log_ports(self, ports):
        for port in ports:
            address = port.getHost()
            self.log.info(
                "chatroom listening on {host} port {port}",
                host=getattr(address, "host", address),
                port=getattr(address, "port", ""),
            )
        return ports

    def log_counters(self) -> None:
        """Log the counters that changed since the last call, in one line.

        Runs once a minute (L{COUNTERS_INTERVAL}); nothing is logged in a
        minute where no counter moved.  Each counter shows its increase
        over that minute and, in brackets, its total since start.
        """
        counters = dict(self.host.counters)
        if self.announcer is not None:
            # Datagrams the announcer dropped, by reason.
            for name, value in getattr(self.announcer, "drops", {}).items():
                counters["discovery-dropped-" + name] = value
        changed = {
            name: value - self._logged_counters.get(name, 0)
            for name, value in counters.items()
            if value != self._logged_counters.get(name, 0)
        }
        self._logged_counters = counters
        if changed:
            self.log.info(
                "chatroom counters: {counters}",
                counters=", ".join(
                    "%s +%d (%d)" % (name, changed[name], counters[name])
                    for name in sorted(changed)
                ),
            )

    def maintain(self) -> None:
        """Remove idle rooms users opened, then apply the retention options.

        Runs hourly (L{MAINTENANCE_INTERVAL}) from a C{TimerService}, whose
        C{LoopingCall} would stop for good on an exception: a step that
        fails is logged in one line and counted (C{upkeep-failures}), the
        other step still runs, and so does the next hour's upkeep.
        """
        for what, step in (
            ("removing idle opened rooms", self.remove_idle_rooms),
            ("pruning the history", self.prune),
        ):
            try:
                step()
            except Exception as e:
                self.host.count("upkeep-failures")
                self.log.error(
                    "Upkeep failed while {what}: {error}; it runs again in an hour.",
                    what=what,
                    error="%s: %s" % (type(e).__name__, e),
                )

    def announced_as(self, room) -> HostedRoom:
        """How C{room} is announced: its name, and whether it offers
        multicast delivery."""
        # Imported here: a host without discovery never loads it.
        from chatroom.discovery import HostedRoom

        return HostedRoom(
            room.channel[1:],
            private=room.private,
            multicast_delivery=self.fanout is not None,
        )

    def _apply_access(self) -> None:
        if self.private is None:
            return
        for key in self._private_keys:
            room = self.host.rooms.get(key)
            if room is not None:
                room.access = self.private.access

    def reload_access(self) -> None:
        """Read the allow-list file again (on C{SIGHUP}); a file that cannot
        be used is logged in one sentence and the old list kept."""
        if self.private is None:
            return
        try:
            access = self.private.reload()
        except AccessFileError as e:
            self.log.error("{error} The allow-list is unchanged.", error=str(e))
            return
        self._apply_access()
        self.log.info(
            "Allow-list read again: {count} client key(s) may join the private rooms.",
            count=len(access.allowed),
        )

    def room_opened(self, room) -> None:
        """A user opened C{room}: announce it at once."""
        if self.announcer is not None:
            self.announcer.add_room(self.announced_as(room))

    def room_removed(self, room) -> None:
        """An opened room went idle and is gone: say goodbye for it."""
        if self.announcer is not None:
            self.announcer.remove_room(room.channel[1:])

    def _add(self, counter: str, amount: int) -> None:
        self.host.counters[counter] = self.host.counters.get(counter, 0) + amount

    def remove_idle_rooms(self) -> list[Room]:
        """Remove the opened rooms idle past C{--room-idle-days}; log them.

        One line per run that removed any, naming each room and how long
        it was idle (days since its newest event, or since it was opened
        when it has none); counter C{rooms-removed} counts the rooms.  A
        removed room's history is deleted but for its newest event, which
        keeps its numbering (docs/decisions.rst).

        @return: the removed L{Room}s.
        """
        removed = self.host.remove_idle_rooms()
        if removed:
            now_ms = self.host.now_ms()
            idle = [
                "%s (idle %.1f days)"
                % (
                    room.channel,
                    (now_ms - max(self.store.last_event_ms(room.key), room.created_ms))
                    / 86400000,
                )
                for room in removed
            ]
            self._add("rooms-removed", len(removed))
            self.log.info(
                "Removed {count} idle opened room(s), their history deleted but "
                "for the newest event: {rooms}",
                count=len(removed),
                rooms=", ".join(idle),
            )
        return removed

    def prune(self) -> int:
        """Apply the retention options to every room; return events deleted.

        One log line per run that deleted any (how many events, in how many
        rooms); counter C{history-pruned} counts the events.
        """
        if self.history_keep is None and self.history_days is None:
            return 0
        before_ms = None
        if self.history_days is not None:
            before_ms = self.host.now_ms() - int(self.history_days * 86400000)
        deleted = 0
        rooms = 0
        for key in self.host.rooms:
            pruned = self.store.prune(key, self.history_keep, before_ms)
            deleted += pruned
            rooms += pruned > 0
        if deleted:
            self._add("history-pruned", deleted)
            self.log.info(
                "Pruned {events} event(s) in {rooms} room(s) "
                "(--history-keep {keep}, --history-days {days}).",
                events=deleted,
                rooms=rooms,
                keep=self.history_keep or 0,
                days=self.history_days or 0,
            )
        return deleted

    def privilegedStartService(self) -> None:
        # Listening happens here, before twistd drops privileges.
        try:
            super().privilegedStartService()
        except Exception as e:
            _exit_cannot_listen(self.listeners, e)
        if self.fanout_socket is not None and self.fanout_socket.transport is None:
            self._start_fanout()

    def _start_fanout(self) -> None:
        """Bind the sending socket on the fan-out interface (any port)."""
        settings = self.fanout
        assert settings is not None and self.fanout_socket is not None
        try:
            self._fanout_port = self.fanout_socket.listen(self.reactor)
        except CannotListenError as e:
            raise SystemExit(
                "chatroom: cannot send fan-out datagrams from %s (%s); give "
                "--fanout-interface the address of one of this machine's "
                "interfaces." % (settings.interface, e.socketError)
            ) from None
        self.fanout_socket.ready.addErrback(
            lambda f: self.log.failure(
                "Could not set up the fan-out socket on {interface}",
                f,
                interface=settings.interface,
            )
        )
        self.log.info(
            "Offering multicast delivery to {group} port {port} from {interface}",
            group=settings.group,
            port=settings.port,
            interface=settings.interface,
        )
        if is_loopback(settings.interface):
            self.log.info(
                "Fan-out is on loopback: only members on this "
                "machine can take multicast delivery. Give "
                "--fanout-interface the address your neighbours "
                "reach to offer it to the network."
            )

    def startService(self) -> None:
        try:
            super().startService()
        except Exception as e:
            _exit_cannot_listen(self.listeners, e)
        ports = self.listening_ports()
        ports.addCallback(self._log_ports)
        if self.discovery is not None and self.announcer is None:
            ports.addCallback(self._start_discovery)
        ports.addErrback(
            lambda f: self.log.failure("Could not start announcing the rooms", f)
        )

    def _start_discovery(self, ports) -> None:
        """Announce the rooms, now that the TLS port is known."""
        # Imported here: a host without discovery never loads it.
        from chatroom.core.discovery import RoomAddress
        from chatroom.discovery import DiscoveryService, HostProtocol

        settings = self.discovery
        addresses = list(settings.addresses)
        if not addresses and self.has_tls_listener:
            bound = ports[0].getHost()
            host = bound.host
            if host in _WILDCARDS:
                host = settings.interface
            addresses = [str(RoomAddress(host, bound.port))]
        self.announcer = HostProtocol(
            self.reactor,
            settings.group,
            settings.port,
            settings.interface,
            self.identity.private_key,
            ReservedCounter(self.store, "announcement"),
            [self.announced_as(room) for room in self.host.rooms.values()],
            addresses,
            ttl=settings.ttl,
        )
        DiscoveryService(self.reactor, self.announcer).setServiceParent(self)
        self.log.info(
            "Announcing {rooms} room(s) on {interface} to {group} port {port}",
            rooms=len(self.host.rooms),
            interface=settings.interface,
            group=settings.group,
            port=settings.port,
        )
        if is_loopback(settings.interface):
            self.log.info(
                "Discovery is on loopback: only this machine hears the "
                "announcements. Give --discovery-interface the address "
                "your neighbours reach to announce to the network."
            )

    @defer.inlineCallbacks
    def stopService(self):
        """Stop announcing and listening, say goodbye to every client, then
        commit what is pending and close the store."""
        try:
            yield super().stopService()
            yield self.host.close_all("Server shutting down")
        finally:
            self.host.stop()
            if self.host.fanout is not None:
                self.host.fanout.stop()
                port, self._fanout_port = getattr(self, "_fanout_port", None), None
                if port is not None:
                    yield port.stopListening()
            self.store.close()


def _exit_cannot_listen(
    listeners: Sequence[ListeningService], error: Exception
) -> None:
    """Stop with one sentence: twistd prints a C{SystemExit}'s message."""
    failed = [listener.description for listener in listeners if listener.failed] or [
        "a listener"
    ]
    if isinstance(error, CannotListenError):
        reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
        raise SystemExit(
            "chatroom: cannot listen on %s port %s (%s); choose another --port "
            "or --listen." % (error.interface or "all addresses", error.port, reason)
        ) from None
    raise SystemExit(
        "chatroom: cannot listen on %s (%s)."
        % (failed[0], getattr(error, "strerror", None) or error)
    ) from None


def data_paths(data_dir: str) -> tuple[str, str]:
    """The key file and the database file inside C{data_dir}."""
    return (
        os.path.join(data_dir, "host-key.pem"),
        os.path.join(data_dir, "history.sqlite3"),
    )
