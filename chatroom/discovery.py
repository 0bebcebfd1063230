"""Twisted edge of discovery: host and listener multicast protocols, and a service.

Every protocol here decodes a datagram, hands it to the pure core
(:mod:`chatroom.core.discovery`, :mod:`chatroom.core.directory`,
:mod:`chatroom.core.search`, :mod:`chatroom.core.schedule`) and writes what
comes back.  Nothing reads the global reactor: the clock and the reactor are
passed in.

- :class:`HostProtocol` announces the rooms a host runs on the announce
  schedule, answers queries for them, and says goodbye on a clean stop.
- :class:`ListenerProtocol` keeps a :class:`~chatroom.core.directory.RoomDirectory`
  up to date, runs expanding-ring searches and one-off queries (from a
  second socket, :attr:`ListenerProtocol.query_protocol`), and relays
  announcements that participants :meth:`~ListenerProtocol.hold`.
- :class:`DiscoveryService` opens and closes the sockets of either one
  inside a ``MultiService``.

Multicast always goes out of an explicit interface and groups are always
joined on an explicit interface: leaving the choice to the kernel sends to
the default route.  See ``docs/protocol-discovery.rst``.
"""

from __future__ import annotations

import random as random_module
import socket
from collections import Counter, OrderedDict, deque
from typing import Any, Callable, Iterable, Sequence

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatroom.core.directory import DirectoryChange, Outcome, RoomDirectory, RoomKey
from chatroom.core.discovery import (
    KIND_ANNOUNCEMENT,
    KIND_ANSWER,
    KIND_GOODBYE,
    KIND_QUERY,
    MAGIC,
    Announcement,
    Answer,
    Goodbye,
    ParseError,
    Query,
    RoomAddress,
    check_room_name,
    parse_datagram,
)
from chatroom.core.schedule import AnnounceSchedule
from chatroom.core.search import (
    DEFAULT_RINGS,
    QUERY_PADDED_SIZE,
    ExpandingRingSearch,
    Ring,
    SearchResult,
)

DEFAULT_GROUP = "239.255.67.82"
"""Default discovery group: IPv4 organization-local scope (RFC 2365);
67.82 is ASCII "CR"."""

DEFAULT_PORT = 47667
"""Default discovery UDP port."""

DEFAULT_ANNOUNCE_TTL = 8
"""Default multicast TTL (router hops) for announcements and goodbyes."""

DEFAULT_LIFETIME = 180
"""Default announcement lifetime: three steady announce intervals."""

ANSWER_DELAY_RANGE = (0.020, 0.120)
"""Answers wait a random 20-120 ms so that responders do not all answer at
once and can see (and suppress for) each other's answers."""

ANSWER_SIZE_FACTOR = 3
"""All answers to one query together are at most this many times its size."""

QUERIES_PER_SOURCE_PER_SECOND = 10
QUERIES_PER_SECOND_TOTAL = 100
"""A query flood from many (possibly spoofed) sources still costs at most
this many answers a second."""

SIGNED_PER_SOURCE_PER_SECOND = 20
SIGNED_PER_SECOND_TOTAL = 200
"""Signature checks (about 0.1-0.3 ms of CPU each) spent on new signed
datagrams, per source and in all: a flood of forged announcements costs a
node at most a few percent of a core."""

VERIFIED_CACHE_SIZE = 1024
"""Recently verified announcements and goodbyes, kept by their exact bytes,
so a repeat (every announcement is sent again and again) is not verified
again."""

MAX_RATE_LIMITED_SOURCES = 1024
MAX_PENDING_ANSWERS = 256
MAX_OWN_QUERY_IDS = 256
SWEEP_INTERVAL = 1.0
"""Seconds between directory expiry sweeps on a listener."""

IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
"""Linux socket option: when on (the default) a socket bound to the wildcard
address receives every group any socket on the host joined on that port."""

_SIGNED_KINDS = frozenset(
    bytes([kind]) for kind in (KIND_ANNOUNCEMENT, KIND_GOODBYE, KIND_ANSWER)
)
_NOT_FOR_HOSTS = frozenset(bytes([kind]) for kind in (KIND_ANNOUNCEMENT, KIND_GOODBYE))

_log = Logger()


@attrs.frozen
class HostedRoom:
    """A room a host announces: its name and its flags."""

    name: str = attrs.field()
    private: bool = False
    multicast_delivery: bool = False

    @name.validator
    def _check_name(self, attribute: object, value: str) -> None:
        check_room_name(value)


class RateLimit:
    """Token buckets per source address plus one for all sources together.

    Each source may spend ``per_source`` tokens a second (bursts up to that
    many); all together ``total`` a second.  At most ``max_sources`` buckets
    are kept; the least recently used is forgotten first.
    """

    def __init__(
        self,
        per_source: float = QUERIES_PER_SOURCE_PER_SECOND,
        total: float = QUERIES_PER_SECOND_TOTAL,
        max_sources: int = MAX_RATE_LIMITED_SOURCES,
    ) -> None:
        self.per_source = per_source
        self.total = total
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._total_bucket = (total, float("-inf"))

    @staticmethod
    def _refill(bucket: tuple[float, float], rate: float, now: float) -> float:
        tokens, last = bucket
        if last == float("-inf"):
            return rate
        return min(rate, tokens + max(0.0, now - last) * rate)

    def allow(self, source: str, now: float) -> bool:
        """Spend one token for ``source`` at ``now``; False if none is left."""
        bucket = self._buckets.pop(source, (self.per_source, float("-inf")))
        tokens = self._refill(bucket, self.per_source, now)
        total_tokens = self._refill(self._total_bucket, self.total, now)
        allowed = tokens >= 1 and total_tokens >= 1
        if allowed:
            tokens -= 1
            total_tokens -= 1
        self._buckets[source] = (tokens, now)
        self._total_bucket = (total_tokens, now)
        while len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return allowed


@attrs.define
class _Held:
    announcement: Announcement
    data: bytes
    expires_at: float | None  # None: our own, never expires


@attrs.define
class _PendingAnswer:
    counter: int
    call: IDelayedCall


class Responder:
    """Answers queries for a set of held announcements.

    Used by both the host (its own rooms) and listeners (announcements a
    participant holds and relays verbatim).  Rate-limits queries, caps the
    answer bytes per query at three times the query's size, waits a random
    20-120 ms, and suppresses an answer when an answer to the same query
    with the same or a newer ``T`` for the same room was seen meanwhile.
    """

    def __init__(
        self,
        clock: IReactorTime,
        send: Callable[[bytes, tuple[str, int]], None],
        random: random_module.Random,
        drops: Counter[str],
        stats: Counter[str],
        rate_limit: RateLimit | None = None,
    ) -> None:
        self._clock = clock
        self._send = send
        self._random = random
        self._drops = drops
        self._stats = stats
        self._rate_limit = rate_limit if rate_limit is not None else RateLimit()
        self._held: dict[RoomKey, _Held] = {}
        self._pending: dict[tuple[bytes, RoomKey], _PendingAnswer] = {}

    def hold(self, announcement: Announcement, expires_at: float | None) -> None:
        """Answer for ``announcement`` (verified) until ``expires_at``
        (``None``: until released).  Replaces an older one for the room."""
        current = self._held.get(announcement.key)
        if current is not None and current.announcement.counter > announcement.counter:
            return
        self._held[announcement.key] = _Held(
            announcement, announcement.to_bytes(), expires_at
        )

    def release(self, key: RoomKey) -> None:
        """Stop answering for room ``key``."""
        self._held.pop(key, None)

    def held(self) -> list[Announcement]:
        """The announcements currently answered for."""
        return [h.announcement for h in self._held.values()]

    def query_received(
        self, query: Query, query_size: int, source: tuple[str, int]
    ) -> None:
        """Schedule answers to ``query`` (``query_size`` bytes, from
        ``source``) for every matching held announcement."""
        now = self._clock.seconds()
        matches = [
            h
            for h in self._held.values()
            if (h.expires_at is None or h.expires_at > now)
            and query.matches(h.announcement)
        ]
        if not matches:
            return
        if not self._rate_limit.allow(source[0], now):
            self._drops["rate-limited"] += 1
            return
        budget = ANSWER_SIZE_FACTOR * query_size
        for held in matches:
            key = (query.query_id, held.announcement.key)
            if key in self._pending:
                continue  # the same query heard twice
            if len(self._pending) >= MAX_PENDING_ANSWERS:
                self._drops["too-many-pending-answers"] += 1
                return
            lifetime = held.announcement.lifetime
            if held.expires_at is not None:
                lifetime = min(lifetime, int(held.expires_at - now))
            if lifetime <= 0:
                continue
            data = Answer(query.query_id, lifetime, held.announcement).to_bytes()
            if len(data) > budget:
                self._drops["answer-too-large"] += 1
                continue
            budget -= len(data)
            delay = self._random.uniform(*ANSWER_DELAY_RANGE)
            call = self._clock.callLater(delay, self._answer_now, key, data, source)
            self._pending[key] = _PendingAnswer(held.announcement.counter, call)

    def answer_seen(self, answer: Answer) -> None:
        """Note someone else's answer; suppress ours to the same query for
        the same room if theirs is as new or newer."""
        key = (answer.query_id, answer.announcement.key)
        pending = self._pending.get(key)
        if pending is not None and answer.announcement.counter >= pending.counter:
            pending.call.cancel()
            del self._pending[key]
            self._stats["answers-suppressed"] += 1

    def stop(self) -> None:
        """Cancel every pending answer."""
        for pending in self._pending.values():
            pending.call.cancel()
        self._pending.clear()

    def _answer_now(
        self, key: tuple[bytes, RoomKey], data: bytes, source: tuple[str, int]
    ) -> None:
        del self._pending[key]
        self._send(data, source)
        self._stats["answers-sent"] += 1


class _MulticastSocket(DatagramProtocol):
    """What hosts and listeners share: socket set-up, sending, counters."""

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
        self.ttl = ttl
        self.random = random if random is not None else random_module.SystemRandom()
        self.drops: Counter[str] = Counter()
        """Datagrams dropped, by reason (ParseError reasons and others)."""
        self.stats: Counter[str] = Counter()
        """Things done: datagrams received by kind, sent, suppressed."""
        self.ready: Deferred[None] = Deferred()
        """Fires (with ``None``) once the group is joined, or once a failure
        to join has been logged."""
        self.responder = Responder(
            clock, self.send_to, self.random, self.drops, self.stats
        )
        self._verified: OrderedDict[bytes, Announcement | Goodbye] = OrderedDict()
        self._signature_budget = RateLimit(
            SIGNED_PER_SOURCE_PER_SECOND, SIGNED_PER_SECOND_TOTAL
        )

    def startProtocol(self) -> None:
        """Set the outgoing interface, TTL and loopback; join the group on
        the interface."""
        transport = self.transport
        assert transport is not None
        try:
            transport.getHandle().setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        except OSError:
            pass  # not Linux: the option does not exist, nothing to turn off
        d = maybeDeferred(transport.setOutgoingInterface, self.interface)
        d.addCallback(lambda _: transport.setTTL(self.ttl))
        d.addCallback(lambda _: transport.setLoopbackMode(True))
        d.addCallback(lambda _: transport.joinGroup(self.group, self.interface))
        d.addCallbacks(self._joined, self._join_failed)
        d.chainDeferred(self.ready)

    def _joined(self, result: object) -> None:
        self.joined()

    def joined(self) -> None:
        """Called once the group is joined; subclasses start work here."""

    def _join_failed(self, failure: Failure) -> None:
        _log.failure(
            "Could not join discovery group {group} on interface {interface};"
            " check that the interface address is one of this machine's.",
            failure,
            group=self.group,
            interface=self.interface,
        )

    def send_to(self, data: bytes, address: tuple[str, int]) -> None:
        """Send one datagram; a failure to send is logged and counted."""
        if self.transport is None:
            self.drops["send-while-stopped"] += 1
            return
        try:
            self.transport.write(data, address)
        except OSError as e:
            self.drops["send-failed"] += 1
            _log.warn(
                "Could not send a discovery datagram to {address}: {error}",
                address=address,
                error=e,
            )

    def send_to_group(self, data: bytes) -> None:
        """Send one datagram to the discovery group."""
        self.send_to(data, (self.group, self.port))

    def parse(self, data: bytes, source: str | None = None) -> Any:
        """Parse a datagram; on ParseError count the reason and return None.

        Signed datagrams seen before (byte for byte) are not verified
        again; new ones from ``source`` spend from a signature budget
        first, so a flood of them is dropped before the costly check.
        """
        signed = data[5:6] in _SIGNED_KINDS
        if signed:
            cached = self._verified.get(data)
            if cached is not None:
                self._verified.move_to_end(data)
                self.stats[f"received-{type(cached).__name__.lower()}"] += 1
                self.stats["verified-before"] += 1
                return cached
            if source is not None and not self._signature_budget.allow(
                source, self.clock.seconds()
            ):
                self.drops["signature-budget"] += 1
                return None
        try:
            datagram = parse_datagram(data)
        except ParseError as e:
            self.drops[e.reason] += 1
            return None
        if isinstance(datagram, (Announcement, Goodbye)):
            self._verified[data] = datagram
            if len(self._verified) > VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
        self.stats[f"received-{type(datagram).__name__.lower()}"] += 1
        return datagram


class HostProtocol(_MulticastSocket):
    """The host's discovery socket: announces its rooms and answers queries.

    ``next_counter()`` returns the next value of the host's persisted
    counter ``T`` (strictly increasing; persistence is the caller's job).
    It is called once per room at start, once per room whenever
    :meth:`update_addresses` changes the content, and once per room for
    the goodbye.
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
        ttl: int = DEFAULT_ANNOUNCE_TTL,
        schedule: AnnounceSchedule | None = None,
        random: random_module.Random | None = None,
    ) -> None:
        super().__init__(clock, group, port, interface, ttl, random)
        self.private_key = private_key
        self.next_counter = next_counter
        self.rooms = tuple(
            r if isinstance(r, HostedRoom) else HostedRoom(r) for r in rooms
        )
        self.addresses = tuple(
            a if isinstance(a, RoomAddress) else RoomAddress.parse(a) for a in addresses
        )
        self.lifetime = lifetime
        self.schedule = (
            schedule if schedule is not None else AnnounceSchedule(self.random)
        )
        self.announcements: tuple[Announcement, ...] = ()
        """The signed announcements currently sent (empty before start)."""
        self._timer: IDelayedCall | None = None
        self._said_goodbye = False
        self._started = False

    def joined(self) -> None:
        """Sign the announcements and start the announce schedule."""
        if self._said_goodbye:
            return
        self._started = True
        self._sign_all()
        self.schedule.restart()
        self._arm()

    def update_addresses(self, addresses: Sequence[RoomAddress | str]) -> None:
        """The room server moved: re-sign with new counters and announce the
        new addresses quickly (the burst starts again)."""
        self.addresses = tuple(
            a if isinstance(a, RoomAddress) else RoomAddress.parse(a) for a in addresses
        )
        if not self._started or self._said_goodbye:
            return
        self._sign_all()
        self.schedule.restart()
        self._cancel_timer()
        self._arm()

    def add_room(self, room: HostedRoom | str) -> None:
        """Start announcing another room at once (a user opened it)."""
        room = room if isinstance(room, HostedRoom) else HostedRoom(room)
        if any(r.name == room.name for r in self.rooms):
            return
        self.rooms += (room,)
        if not self._started or self._said_goodbye:
            return  # joined() signs every room
        announcement = self._sign(room)
        self.announcements += (announcement,)
        self.responder.hold(announcement, None)
        self.send_to_group(announcement.to_bytes())
        self.stats["announcements-sent"] += 1

    def remove_room(self, name: str) -> Goodbye | None:
        """Stop announcing room C{name} and send its signed goodbye."""
        if not any(r.name == name for r in self.rooms):
            return None
        self.rooms = tuple(r for r in self.rooms if r.name != name)
        if not self._started or self._said_goodbye:
            return None
        for announcement in self.announcements:
            if announcement.room == name:
                self.responder.release(announcement.key)
        self.announcements = tuple(a for a in self.announcements if a.room != name)
        goodbye = Goodbye.sign(self.private_key, name, self.next_counter())
        self.send_to_group(goodbye.to_bytes())
        self.stats["goodbyes-sent"] += 1
        return goodbye

    def announce_now(self) -> None:
        """Send every room's announcement to the group once, now."""
        for announcement in self.announcements:
            self.send_to_group(announcement.to_bytes())
            self.stats["announcements-sent"] += 1

    def say_goodbye(self) -> list[Goodbye]:
        """Stop announcing and send a signed goodbye for every room (each
        with a new counter).  Safe to call more than once; only the first
        call sends."""
        if self._said_goodbye:
            return []
        self._said_goodbye = True
        self._cancel_timer()
        self.responder.stop()
        goodbyes = []
        if self.announcements:
            for room in self.rooms:
                goodbye = Goodbye.sign(self.private_key, room.name, self.next_counter())
                self.send_to_group(goodbye.to_bytes())
                self.stats["goodbyes-sent"] += 1
                goodbyes.append(goodbye)
            for announcement in self.announcements:
                self.responder.release(announcement.key)
        return goodbyes

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        """Answer queries for our rooms; note others' answers."""
        if data[:4] == MAGIC and data[5:6] in _NOT_FOR_HOSTS:
            # Other hosts' announcements and goodbyes: not a host's business,
            # and not worth a signature check.
            self.stats["ignored"] += 1
            return
        datagram = self.parse(data, addr[0])
        if isinstance(datagram, Query):
            self.responder.query_received(datagram, len(data), addr)
        elif isinstance(datagram, Answer):
            self.responder.answer_seen(datagram)

    def stopProtocol(self) -> None:
        """Stop the timers (the goodbye is :meth:`say_goodbye`'s job)."""
        self._cancel_timer()
        self.responder.stop()

    def _sign(self, room: HostedRoom) -> Announcement:
        return Announcement.sign(
            self.private_key,
            room.name,
            self.addresses,
            counter=self.next_counter(),
            lifetime=self.lifetime,
            private=room.private,
            multicast_delivery=room.multicast_delivery,
        )

    def _sign_all(self) -> None:
        self.announcements = tuple(self._sign(room) for room in self.rooms)
        for announcement in self.announcements:
            self.responder.hold(announcement, None)

    def _arm(self) -> None:
        self._timer = self.clock.callLater(self.schedule.next_delay(), self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.announce_now()
        self._arm()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class QuerySocketProtocol(DatagramProtocol):
    """The listener's second socket, on an ephemeral port: sends queries
    (with each ring's TTL) and receives the unicast answers to them."""

    def __init__(self, listener: ListenerProtocol) -> None:
        self.listener = listener

    def startProtocol(self) -> None:
        """Send out of the discovery interface only."""
        transport = self.transport
        assert transport is not None
        try:
            transport.getHandle().setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        except OSError:
            pass
        d = maybeDeferred(transport.setOutgoingInterface, self.listener.interface)
        d.addCallback(lambda _: transport.setLoopbackMode(True))
        d.addErrback(self.listener._join_failed)

    def send_query(self, query: Query, ttl: int) -> None:
        """Send ``query`` to the group with multicast TTL ``ttl``."""
        transport = self.transport
        if transport is None:
            self.listener.drops["send-while-stopped"] += 1
            return
        transport.setTTL(ttl)
        try:
            transport.write(query.to_bytes(), (self.listener.group, self.listener.port))
        except OSError as e:
            self.listener.drops["send-failed"] += 1
            _log.warn("Could not send a discovery query: {error}", error=e)
            return
        self.listener.stats["queries-sent"] += 1

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        """Answers arrive here; the listener handles them."""
        self.listener.datagramReceived(data, addr)


class ListenerProtocol(_MulticastSocket):
    """A listener's discovery socket: keeps the room directory, searches,
    and relays held announcements.

    ``on_change(change)`` is called with every
    :class:`~chatroom.core.directory.DirectoryChange` that alters the set of
    rooms or a room's announcement (added, updated, removed, expired,
    evicted).  The second socket for queries is :attr:`query_protocol`;
    :class:`DiscoveryService` listens on both.
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
        self.directory = directory if directory is not None else RoomDirectory()
        self.on_change = on_change
        self.query_protocol = QuerySocketProtocol(self)
        self._new_query_id = new_query_id or (
            lambda: self.random.getrandbits(64).to_bytes(8, "big")
        )
        self._own_query_ids: deque[bytes] = deque(maxlen=MAX_OWN_QUERY_IDS)
        self._searches: set[ExpandingRingSearch] = set()
        self._held_keys: set[RoomKey] = set()
        self._sweeper: IDelayedCall | None = None

    # -- lifetime -----------------------------------------------------------

    def startProtocol(self) -> None:
        """Join the group and start the expiry sweep."""
        super().startProtocol()
        self._sweeper = self.clock.callLater(SWEEP_INTERVAL, self._sweep)

    def stopProtocol(self) -> None:
        """Stop the sweep, pending answers and running searches."""
        if self._sweeper is not None and self._sweeper.active():
            self._sweeper.cancel()
        self._sweeper = None
        self.responder.stop()
        for search in list(self._searches):
            search.cancel()

    # -- asking -------------------------------------------------------------

    def search(
        self,
        room: str | None = None,
        fingerprint_prefix: bytes = b"",
        rings: Sequence[Ring] = DEFAULT_RINGS,
    ) -> Deferred[SearchResult]:
        """Run an expanding-ring search for one room.

        Returns a Deferred that fires with a
        :class:`~chatroom.core.search.SearchResult`: ``found`` with the
        newest announcement the directory holds for the room answered, or
        not found after the last ring.  Cancelling the Deferred (or stopping
        the listener) fires it with a result in the ``cancelled`` state.
        """
        done: Deferred[SearchResult] = Deferred(lambda d: search.cancel())

        def finished(result: SearchResult) -> None:
            self._searches.discard(search)
            found = result.announcement
            if found is not None:
                entry = self.directory.lookup(found.q, found.room, self.clock.seconds())
                if entry is not None and entry.announcement.counter > found.counter:
                    result = attrs.evolve(result, announcement=entry.announcement)
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
        """Send one query (any room by default) with ``ttl``; the answers
        go into the directory.  ``chatroom rooms`` calls this at start so
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
        now = self.clock.seconds()
        self.directory.offer_announcement(announcement, now)
        entry = self.directory.lookup(announcement.q, announcement.room, now)
        self._held_keys.add(announcement.key)
        if entry is not None:
            self.responder.hold(entry.announcement, entry.expires_at)

    def release(self, q: bytes, room: str) -> None:
        """Stop relaying room ``(q, room)``."""
        self._held_keys.discard((q, room))
        self.responder.release((q, room))

    # -- receiving ----------------------------------------------------------

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        """Decode one datagram and hand it to the directory, the searches
        or the responder.  Bad datagrams are counted and dropped."""
        if data[5:6] == bytes([KIND_QUERY]) and data[6:14] in self._own_query_ids:
            self.stats["own-query"] += 1
            return
        datagram = self.parse(data, addr[0])
        if datagram is None:
            return
        now = self.clock.seconds()
        if isinstance(datagram, Announcement):
            self._apply(self.directory.offer_announcement(datagram, now))
        elif isinstance(datagram, Goodbye):
            self._apply(self.directory.offer_goodbye(datagram, now))
        elif isinstance(datagram, Answer):
            self._apply(self.directory.offer_answer(datagram, now))
            self.responder.answer_seen(datagram)
            for search in list(self._searches):
                search.answer_received(datagram)
        elif isinstance(datagram, Query):
            self.responder.query_received(datagram, len(data), addr)

    # -- internals ------------------------------------------------------------

    def _send_own_query(self, query: Query, ttl: int) -> None:
        self._own_query_ids.append(query.query_id)
        self.query_protocol.send_query(query, ttl)

    def _apply(self, changes: list[DirectoryChange]) -> None:
        for change in changes:
            key = change.entry.key
            if key in self._held_keys:
                if change.outcome in (
                    Outcome.ADDED,
                    Outcome.UPDATED,
                    Outcome.REFRESHED,
                ):
                    self.responder.hold(
                        change.entry.announcement, change.entry.expires_at
                    )
                elif change.outcome in (
                    Outcome.REMOVED,
                    Outcome.EXPIRED,
                    Outcome.EVICTED,
                ):
                    self.release(*key)
            if change.outcome.changed and self.on_change is not None:
                self.on_change(change)

    def _sweep(self) -> None:
        self._apply(self.directory.expire(self.clock.seconds()))
        self._sweeper = self.clock.callLater(SWEEP_INTERVAL, self._sweep)


class DiscoveryService(Service):
    """Opens a host's or listener's discovery sockets while running.

    The discovery socket binds the group port on all addresses (binding the
    interface address would receive no multicast) and shares it with other
    programs; a listener's query socket takes an ephemeral port.
    :meth:`stopService` makes a host send its goodbyes first, and returns
    a Deferred that fires when the sockets are closed.
    """

    def __init__(self, reactor: Any, protocol: HostProtocol | ListenerProtocol) -> None:
        self.reactor = reactor
        self.protocol = protocol
        self._ports: list[Any] = []

    def startService(self) -> None:
        """Listen on the discovery port (and the query socket)."""
        super().startService()
        self._ports.append(
            self.reactor.listenMulticast(
                self.protocol.port, self.protocol, interface="", listenMultiple=True
            )
        )
        if isinstance(self.protocol, ListenerProtocol):
            self._ports.append(
                self.reactor.listenMulticast(
                    0, self.protocol.query_protocol, interface=""
                )
            )

    def stopService(self) -> Deferred[None]:
        """Say goodbye (hosts) and close the sockets."""
        super().stopService()
        if isinstance(self.protocol, HostProtocol):
            self.protocol.say_goodbye()
        ports, self._ports = self._ports, []
        d = gatherResults([maybeDeferred(port.stopListening) for port in ports])
        d.addCallback(lambda _: None)
        return d
