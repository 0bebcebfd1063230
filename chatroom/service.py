# -*- test-case-name: tests.test_service -*-
"""The host service: the one place where a room host is wired together.

Store, identity, rooms, listeners and timers are built here and nowhere
else; every part receives the reactor it should use.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any, Sequence

import attrs
from twisted.application import internet, service
from twisted.internet import defer, endpoints
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from chatroom.core.discovery import RoomAddress
from chatroom.discovery import (
    DEFAULT_ANNOUNCE_TTL,
    DEFAULT_GROUP,
    DEFAULT_PORT,
    DiscoveryService,
    HostProtocol,
)
from chatroom.history import HistoryStore, ReservedCounter
from chatroom.host import Limits, RoomHost
from chatroom.identity import HostIdentity
from chatroom.ircserver import IRCFactory
from chatroom.tls import server_options

#: How often old history is pruned and idle opened rooms removed, in seconds.
MAINTENANCE_INTERVAL = 3600.0


@attrs.frozen
class DiscoverySettings:
    """Where and how a host announces its rooms.

    @ivar interface: the address of the interface to announce on; always
        explicit, since leaving it to the kernel sends to the default route.
    @ivar addresses: the room server addresses to announce (C{host:port});
        empty means the TLS listener's address and actual port.
    """

    interface: str
    group: str = DEFAULT_GROUP
    port: int = DEFAULT_PORT
    ttl: int = DEFAULT_ANNOUNCE_TTL
    addresses: tuple[str, ...] = ()


_WILDCARDS = ("", "0.0.0.0", "::")


class HostService(service.MultiService):
    """A running room host: TLS listener, extra listeners, pruning.

    @param reactor: the reactor to listen with and to use as clock.
    @param identity: the host's L{HostIdentity}.
    @param store: the opened L{HistoryStore}; closed when the service stops.
    @param rooms: room names to host.
    @param tls_port: TCP port of the TLS listener (0: any free port;
        C{None}: no TLS listener).
    @param tls_interface: address the TLS listener binds to (C{""}: all IPv4).
    @param listen: extra Twisted server endpoint descriptions (plain text).
    @param discovery: where to announce the rooms, or C{None} not to.
    """

    log = Logger()

    def __init__(self, reactor: Any, identity: HostIdentity, store: HistoryStore,
                 rooms: Sequence[str], tls_port: int | None = 6697,
                 tls_interface: str = "", listen: Sequence[str] = (),
                 limits: Limits = Limits(), server_name: str | None = None,
                 motd: Sequence[str] = (), history_keep: int | None = None,
                 history_days: float | None = None,
                 discovery: DiscoverySettings | None = None,
                 operators: dict[str, str] | None = None) -> None:
        super().__init__()
        self.tls_interface = tls_interface
        self.discovery = discovery
        self.announcer: HostProtocol | None = None
        self.reactor = reactor
        self.identity = identity
        self.store = store
        self.history_keep = history_keep
        self.history_days = history_days
        name = server_name or identity.short_fingerprint + ".chatroom"
        self.host = RoomHost(store, reactor, name, rooms, limits, motd,
                             observer=self, operators=operators)
        self.factory = IRCFactory(self.host)
        self.tls_endpoint = None
        self._listeners: list[internet.StreamServerEndpointService] = []
        if tls_port is not None:
            self.tls_endpoint = endpoints.SSL4ServerEndpoint(
                reactor, tls_port, server_options(identity),
                interface=tls_interface)
            self._listen(self.tls_endpoint)
        for description in listen:
            self._listen(endpoints.serverFromString(reactor, description))
        # Hourly upkeep, and once at start: retention and idle opened rooms.
        timer = internet.TimerService(MAINTENANCE_INTERVAL, self.maintain)
        timer.clock = reactor
        timer.setServiceParent(self)

    def _listen(self, endpoint: Any) -> None:
        listener = internet.StreamServerEndpointService(endpoint, self.factory)
        # A port that cannot be opened stops the start with that error,
        # rather than a host that runs without its listener.
        listener._raiseSynchronously = True
        listener.setServiceParent(self)
        self._listeners.append(listener)

    def listening_ports(self) -> defer.Deferred:
        """Fires with the L{IListeningPort} of every listener, once started."""
        # StreamServerEndpointService keeps its port Deferred private; this
        # is the one place that reads it.
        return defer.gatherResults([listener._waitingForPort
                                    for listener in self._listeners])

    def _log_ports(self, ports):
        for port in ports:
            address = port.getHost()
            self.log.info("chatroom listening on {host} port {port}",
                          host=address.host, port=address.port)
        return ports

    def maintain(self) -> None:
        """Remove idle rooms users opened, then apply the retention options."""
        self.host.remove_idle_rooms()
        self.prune()

    def room_opened(self, room) -> None:
        """A user opened C{room}: announce it at once."""
        if self.announcer is not None:
            self.announcer.add_room(room.channel[1:])

    def room_removed(self, room) -> None:
        """An opened room went idle and is gone: say goodbye for it."""
        if self.announcer is not None:
            self.announcer.remove_room(room.channel[1:])

    def prune(self) -> int:
        """Apply the retention options to every room; return events deleted."""
        if self.history_keep is None and self.history_days is None:
            return 0
        before_ms = None
        if self.history_days is not None:
            before_ms = self.host.now_ms() - int(self.history_days * 86400000)
        deleted = 0
        for key in self.host.rooms:
            deleted += self.store.prune(key, self.history_keep, before_ms)
        return deleted

    def privilegedStartService(self) -> None:
        # Listening happens here, before twistd drops privileges.
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            _exit_cannot_listen(e)

    def startService(self) -> None:
        try:
            super().startService()
        except CannotListenError as e:
            _exit_cannot_listen(e)
        ports = self.listening_ports()
        ports.addCallback(self._log_ports)
        if self.discovery is not None and self.announcer is None:
            ports.addCallback(self._start_discovery)
        ports.addErrback(lambda f: self.log.failure(
            "Could not start announcing the rooms", f))

    def _start_discovery(self, ports) -> None:
        """Announce the rooms, now that the TLS port is known."""
        settings = self.discovery
        addresses = list(settings.addresses)
        if not addresses and self.tls_endpoint is not None:
            host = self.tls_interface
            if host in _WILDCARDS:
                host = settings.interface
            addresses = [str(RoomAddress(host, ports[0].getHost().port))]
        self.announcer = HostProtocol(
            self.reactor, settings.group, settings.port, settings.interface,
            self.identity.private_key,
            ReservedCounter(self.store, "announcement"),
            [room.channel[1:] for room in self.host.rooms.values()], addresses,
            ttl=settings.ttl)
        DiscoveryService(self.reactor, self.announcer).setServiceParent(self)
        self.log.info("Announcing {rooms} room(s) on {interface} to {group} port {port}",
                      rooms=len(self.host.rooms), interface=settings.interface,
                      group=settings.group, port=settings.port)
        if ipaddress.ip_address(settings.interface).is_loopback:
            self.log.info("Discovery is on loopback: only this machine hears the "
                          "announcements. Give --discovery-interface the address "
                          "your neighbours reach to announce to the network.")

    @defer.inlineCallbacks
    def stopService(self):
        """Stop announcing and listening, say goodbye to every client, then
        commit what is pending and close the store."""
        try:
            yield super().stopService()
            yield self.host.close_all("Server shutting down")
        finally:
            self.host.stop()
            self.store.close()


def _exit_cannot_listen(error: CannotListenError) -> None:
    """Stop with one sentence: twistd prints a SystemExit's message."""
    reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
    raise SystemExit(
        "chatroom: cannot listen on %s port %s (%s); choose another --port "
        "or --listen." % (error.interface or "all addresses", error.port,
                          reason)) from None


def data_paths(data_dir: str) -> tuple[str, str]:
    """The key file and the database file inside C{data_dir}."""
    return (os.path.join(data_dir, "host-key.pem"),
            os.path.join(data_dir, "history.sqlite3"))
