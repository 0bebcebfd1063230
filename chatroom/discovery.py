# -*- test-case-name: tests.test_discovery_net -*-
"""Twisted edge of discovery: the multicast sockets of a host and a listener, and a service.

Bytes live here; state lives in the pure core (L{chatroom.core.node}
and what it is built from), as txtorcon keeps C{TorControlProtocol} apart
from C{TorState}.  Each protocol:

- sets up its socket (explicit multicast interface, TTL, group join);
- hands every datagram to its node's one C{datagram_received} method and
  sends what comes back;
- keeps one timer, armed for the node's L{next_wake}, and sends what
  the node's C{wake} returns.

L{HostProtocol} announces a host's rooms and answers queries for
them; L{ListenerProtocol} keeps a room directory, runs searches and
relays held announcements, with a second socket
(L{ListenerProtocol.query_protocol}) for its queries;
L{DiscoveryService} opens and closes their sockets.  Nothing reads
the global reactor: the clock and the reactor are passed in.

Multicast always goes out of an explicit interface and groups are always
joined on an explicit interface: leaving the choice to the kernel sends to
the default route.  See C{docs/protocol-discovery.rst}.
"""

from __future__ import annotations


import random as random_module
import socket
from collections import Counter
from typing import Any, Callable, Iterable, Sequence

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatroom.core.announcer import DEFAULT_LIFETIME, Announcer, HostedRoom
from chatroom.core.directory import DirectoryChange, RoomDirectory
from chatroom.core.addresses import is_loopback
from chatroom.core.discovery import Announcement, Query, RoomAddress
from chatroom.core.node import HostNode, ListenerNode, Reaction
from chatroom.wellknown import DISCOVERY_TTL
from chatroom.core.responder import Responder
from chatroom.core.schedule import AnnounceSchedule
from chatroom.core.search import (
    DEFAULT_RINGS,
    QUERY_PADDED_SIZE,
    ExpandingRingSearch,
    Ring,
    SearchResult,
)

__all__ = [
    "DEFAULT_LIFETIME",
    "DiscoveryService",
    "HostProtocol",
    "HostedRoom",
    "ListenerProtocol",
    "QuerySocketProtocol",
]


IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
"""Linux socket option: when on (the default) a socket bound to the wildcard
address receives every group any socket on the host joined on that port."""

_log = Logger()


def _only_joined_groups(transport: Any) -> None:
    """Turn IP_MULTICAST_ALL off: receive only the groups this socket joined."""
    try:
        transport.getHandle().setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
    except OSError:
        pass  # not Linux: the option does not exist, nothing to turn off


def log_setup_failure(failure: Failure, group: str, interface: str) -> None:
    """Log, as one sentence, that a discovery socket could not be set up."""
    _log.failure(
        "Could not join discovery group {group} on interface {interface};"
        " check that the interface address is one of this machine's.",
        failure,
        group=group,
        interface=interface,
    )


def _send(
    transport: Any, data: bytes, address: tuple[str, int], drops: Counter[str]
) -> bool:
    """Write one datagram; a failure is logged and counted in C{drops}."""
    if transport is None:
        drops["send-while-stopped"] += 1
        return False
    try:
        transport.write(data, address)
    except OSError as e:
        drops["send-failed"] += 1
        _log.warn(
            "Could not send a discovery datagram to {address}: {error}",
            address=address,
            error=e,
        )
        return False
    return True


class _MulticastSocket(DatagramProtocol):
    """What hosts and listeners share: socket set-up, one timer, sending.

    Subclasses set L{node} (a L{chatroom.core.node.HostNode}
    or L{chatroom.core.node.ListenerNode}).
    """

    node: HostNode | ListenerNode

    def __init__(
        self,
        clock: IReactorTime,
        group: str,
        port: int,
        interface: str,
        ttl: int,
        random: random_module.Random | None,
    ) -> None:
        if not interface:
            raise ValueError(
                "Give the discovery interface address explicitly (for example"
                " 127.0.0.1 for a test); without it multicast leaves through"
                " the default route."
            )
        self.clock = clock
        self.group = group
        self.port = port
        self.interface = interface
        self._loopback_only = is_loopback(interface)
        self.ttl = ttl
        self.random = random if random is not None else random_module.SystemRandom()
        self.ready: Deferred[None] = Deferred()
        """Fires (with C{None}) once the group is joined, or once a failure
        to join has been logged."""
        self._timer: IDelayedCall | None = None
        self._timer_at: float | None = None
        self._running = False

    @property
    def drops(self) -> Counter[str]:
        """Datagrams dropped or not sent, by reason: the node's one counter."""
        return self.node.drops

    @property
    def stats(self) -> Counter[str]:
        """Things done: datagrams received by kind, sent, suppressed."""
        return self.node.stats

    @property
    def responder(self) -> Responder:
        """The node's L{chatroom.core.responder.Responder}."""
        return self.node.responder

    # -- socket ---------------------------------------------------------------

    def startProtocol(self) -> None:
        """Set the outgoing interface, TTL and loopback; join the group on
        the interface; then let the node start."""
        transport = self.transport
        assert transport is not None
        self._running = True
        _only_joined_groups(transport)
        d = maybeDeferred(transport.setOutgoingInterface, self.interface)
        d.addCallback(lambda _: transport.setTTL(self.ttl))
        d.addCallback(lambda _: transport.setLoopbackMode(True))
        d.addCallback(lambda _: transport.joinGroup(self.group, self.interface))
        d.addCallbacks(
            lambda _: self.joined(),
            lambda f: log_setup_failure(f, self.group, self.interface),
        )
        d.chainDeferred(self.ready)

    def joined(self) -> None:
        """Called once the group is joined; subclasses start their node."""

    def stopProtocol(self) -> None:
        """The socket closed: stop the node and the timer."""
        self._running = False
        self.node.stop()
        self._cancel_timer()

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        """Hand one datagram to the node; send what it returns.

        The socket is bound to all addresses (it must be, to receive the
        group), so on a loopback-only node a neighbour could still send it
        a unicast query and be answered; datagrams from outside this
        machine are dropped there (counter C{not-from-loopback}).
        """
        if self._loopback_only and not is_loopback(addr[0]):
            self.drops["not-from-loopback"] += 1
            return
        self.react(self.node.datagram_received(data, addr, self.clock.seconds()))

    # -- what the node returns ----------------------------------------------------

    def react(self, reaction: Reaction) -> None:
        """Send C{reaction}'s datagrams and re-arm the timer."""
        for send in reaction.sends:
            _send(self.transport, send.data, send.address, self.drops)
        self._arm()

    def _arm(self) -> None:
        """Keep the one timer armed for the node's next wake-up."""
        at = self.node.next_wake() if self._running else None
        if at == self._timer_at and self._timer is not None:
            return
        self._cancel_timer()
        if at is not None:
            self._timer_at = at
            self._timer = self.clock.callLater(
                max(0.0, at - self.clock.seconds()), self._wake
            )

    def _wake(self) -> None:
        self._timer = None
        self._timer_at = None
        self.react(self.node.wake(self.clock.seconds()))

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    # -- for DiscoveryService -------------------------------------------------------

    def listen(self, reactor: Any) -> list[Any]:
        """Open this protocol's sockets on C{reactor}; return the ports.

        The discovery socket binds the group port on all addresses (binding
        the interface address would receive no multicast) and shares it
        with other programs.
        """
        return [
            reactor.listenMulticast(self.port, self, interface="", listenMultiple=True)
        ]

    def stopping(self) -> None:
        """The service is about to close the sockets."""


class HostProtocol(_MulticastSocket):
    """The host's discovery socket: announces its rooms and answers queries.

    C{next_counter()} returns the next value of the host's persisted
    counter C{T} (see L{chatroom.core.announcer.Announcer}).
    """

    def __init__(
        self,
        clock: IReactorTime,
        group: str,
        port: int,
        interface: str,
        private_key: Ed25519PrivateKey,
        next_counter: Callable[[], int],
        rooms: Iterable[HostedRoom | str],
        addresses: Sequence[RoomAddress | str],
        lifetime: int = DEFAULT_LIFETIME,
        ttl: int = DISCOVERY_TTL,
        schedule: AnnounceSchedule | None = None,
        random: random_module.Random | None = None,
    ) -> None:
        super().__init__(clock, group, port, interface, ttl, random)
        announcer = Announcer(
            private_key,
            next_counter,
            rooms,
            addresses,
            schedule if schedule is not None else AnnounceSchedule(self.random),
            lifetime,
        )
        self.node = HostNode(announcer, (group, port), self.random)

    @property
    def announcements(self) -> tuple[Announcement, ...]:
        """The signed announcements currently sent (empty before start)."""
        return self.node.announcer.announcements

    @property
    def rooms(self) -> tuple[HostedRoom, ...]:
        """The rooms announced."""
        return self.node.announcer.rooms

    def joined(self) -> None:
        """Sign the announcements and start the announce schedule."""
        self.react(self.node.start(self.clock.seconds()))

    def update_addresses(self, addresses: Sequence[RoomAddress | str]) -> None:
        """The room server moved: re-sign with new counters and announce the
        new addresses quickly (the burst starts again)."""
        self.react(self.node.update_addresses(addresses, self.clock.seconds()))

    def add_room(self, room: HostedRoom | str) -> None:
        """Start announcing another room at once (a user opened it)."""
        self.react(self.node.add_room(room))

    def remove_room(self, name: str) -> None:
        """Stop announcing room C{name} and send its signed goodbye."""
        self.react(self.node.remove_room(name))

    def say_goodbye(self) -> None:
        """Stop announcing and send a signed goodbye for every room.  Safe
        to call more than once; only the first call sends."""
        self.react(self.node.say_goodbye())

    def stopping(self) -> None:
        """Say goodbye before the socket closes."""
        self.say_goodbye()


class QuerySocketProtocol(DatagramProtocol):
    """The listener's second socket, on an ephemeral port: sends queries
    (with each ring's TTL) and receives the unicast answers to them."""

    def __init__(self, listener: ListenerProtocol) -> None:
        self.listener = listener

    def startProtocol(self) -> None:
        """Send out of the discovery interface only."""
        transport = self.transport
        assert transport is not None
        _only_joined_groups(transport)
        d = maybeDeferred(transport.setOutgoingInterface, self.listener.interface)
        d.addCallback(lambda _: transport.setLoopbackMode(True))
        d.addErrback(log_setup_failure, self.listener.group, self.listener.interface)

    def send_query(self, query: Query, ttl: int) -> None:
        """Send C{query} to the group with multicast TTL C{ttl}."""
        if self.transport is not None:
            self.transport.setTTL(ttl)
        group = (self.listener.group, self.listener.port)
        if _send(self.transport, query.to_bytes(), group, self.listener.drops):
            self.listener.stats["queries-sent"] += 1

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        """Answers arrive here; the listener handles them."""
        self.listener.datagramReceived(data, addr)


class ListenerProtocol(_MulticastSocket):
    """A listener's discovery socket: keeps the room directory, searches,
    and relays held announcements.

    C{on_change(change)} is called with every
    L{chatroom.core.directory.DirectoryChange} that alters the set of
    rooms or a room's announcement (added, updated, removed, expired,
    evicted).  The second socket for queries is L{query_protocol}.
    """

    def __init__(
        self,
        clock: IReactorTime,
        group: str,
        port: int,
        interface: str,
        directory: RoomDirectory | None = None,
        on_change: Callable[[DirectoryChange], None] | None = None,
        random: random_module.Random | None = None,
        new_query_id: Callable[[], bytes] | None = None,
    ) -> None:
        super().__init__(clock, group, port, interface, 1, random)
        self.node = ListenerNode(self.random, directory)
        self.on_change = on_change
        self.query_protocol = QuerySocketProtocol(self)
        self._new_query_id = new_query_id or (
            lambda: self.random.getrandbits(64).to_bytes(8, "big")
        )
        self._searches: set[ExpandingRingSearch] = set()

    @property
    def directory(self) -> RoomDirectory:
        """The rooms heard so far."""
        return self.node.directory

    # -- lifetime -----------------------------------------------------------

    def startProtocol(self) -> None:
        """Join the group and start the expiry sweep."""
        super().startProtocol()
        self.node.start(self.clock.seconds())
        self._arm()

    def stopProtocol(self) -> None:
        """Stop the sweep, pending answers and running searches."""
        super().stopProtocol()
        for search in list(self._searches):
            search.cancel()

    def listen(self, reactor: Any) -> list[Any]:
        """Open the discovery socket and the query socket (an ephemeral
        port)."""
        return super().listen(reactor) + [
            reactor.listenMulticast(0, self.query_protocol, interface="")
        ]

    # -- asking -------------------------------------------------------------

    def search(
        self,
        room: str | None = None,
        fingerprint_prefix: bytes = b"",
        rings: Sequence[Ring] = DEFAULT_RINGS,
    ) -> Deferred[SearchResult]:
        """Run an expanding-ring search for one room.

        Returns a Deferred that fires with a
        L{chatroom.core.search.SearchResult}: C{found} with the
        newest announcement the directory holds for the room answered, or
        not found after the last ring.  Cancelling the Deferred (or stopping
        the listener) fires it with a result in the C{cancelled} state.
        """
        done: Deferred[SearchResult] = Deferred(lambda d: search.cancel())

        def finished(result: SearchResult) -> None:
            self._searches.discard(search)
            if result.announcement is not None:
                newest = self.node.newest(result.announcement, self.clock.seconds())
                result = attrs.evolve(result, announcement=newest)
            if not done.called:
                done.callback(result)

        search = ExpandingRingSearch(
            self.clock,
            send_query=self._send_own_query,
            on_finished=finished,
            room=room,
            fingerprint_prefix=fingerprint_prefix,
            rings=rings,
            new_query_id=self._new_query_id,
        )
        self._searches.add(search)
        search.start()
        return done

    def ask(
        self, room: str | None = None, fingerprint_prefix: bytes = b"", ttl: int = 1
    ) -> Query:
        """Send one query (any room by default) with C{ttl}; the answers
        go into the directory.  C{chatroom rooms} calls this at start so
        the list fills within about a second.  Returns the query sent."""
        query = Query(
            query_id=self._new_query_id(),
            room=room,
            fingerprint_prefix=fingerprint_prefix,
        ).padded_to(QUERY_PADDED_SIZE)
        self._send_own_query(query, ttl)
        return query

    # -- relaying -----------------------------------------------------------

    def hold(self, announcement: Announcement) -> None:
        """Answer queries for this (verified) announcement by relaying it
        verbatim, as a participant of the room does.  Newer announcements
        of the room heard later replace it; it is released when the room
        expires or says goodbye."""
        self.node.hold(announcement, self.clock.seconds())

    def release(self, q: bytes, room: str) -> None:
        """Stop relaying room C{(q, room)}."""
        self.node.release(q, room)

    # -- what the node returns ----------------------------------------------------

    def react(self, reaction: Reaction) -> None:
        """Send, report directory changes, and feed answers to searches."""
        super().react(reaction)
        if self.on_change is not None:
            for change in reaction.changes:
                self.on_change(change)
        for answer in reaction.answers:
            for search in list(self._searches):
                search.answer_received(answer)

    def _send_own_query(self, query: Query, ttl: int) -> None:
        self.node.query_sent(query)
        self.query_protocol.send_query(query, ttl)


class DiscoveryService(Service):
    """Opens a host's or listener's discovery sockets while running.

    L{stopService} lets the protocol act first (a host sends its
    goodbyes), and returns a Deferred that fires when the sockets are
    closed.
    """

    def __init__(self, reactor: Any, protocol: HostProtocol | ListenerProtocol) -> None:
        self.reactor = reactor
        self.protocol = protocol
        self._ports: list[Any] = []

    def startService(self) -> None:
        """Open the protocol's sockets."""
        super().startService()
        self._ports = self.protocol.listen(self.reactor)

    def stopService(self) -> Deferred[None]:
        """Say goodbye (hosts) and close the sockets."""
        super().stopService()
        self.protocol.stopping()
        ports, self._ports = self._ports, []
        d = gatherResults([maybeDeferred(port.stopListening) for port in ports])
        d.addCallback(lambda _: None)
        return d
