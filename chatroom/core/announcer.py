# -*- test-case-name: tests.test_discovery_announcer -*-
"""A host's announcements: which rooms, signed with which counter, sent when.

An L{Announcer} holds the rooms a host runs and their signed
announcements.  It signs each room once with a fresh value of the host's
persisted counter C{T} (and again only when the content changes: a new
address), sends the same bytes on the L{chatroom.core.schedule.AnnounceSchedule},
and signs a goodbye with a new C{T} when a room closes or the host stops.

Pure: C{now} is passed in and the schedule's randomness is injected.  The
announcer never sends: every method returns the datagrams to send now, and
L{Announcer.next_due} says when L{Announcer.due} has more.  State
diagram: C{docs/state-machines/announce.dot}.
"""

from __future__ import annotations

import enum
from typing import Callable, Iterable, Sequence

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chatroom.core.discovery import (
    Announcement,
    Goodbye,
    RoomAddress,
    check_room_name,
)
from chatroom.core.schedule import AnnounceSchedule

DEFAULT_LIFETIME = 180
"""Default announcement lifetime in seconds: three steady announce
intervals (docs/protocol-discovery.rst, "Host")."""

TIME_TOLERANCE = 1e-9
"""Seconds: a due time this close to C{now} counts as reached (float
rounding of timers)."""


@attrs.frozen
class HostedRoom:
    """A room a host announces: its name and its flags."""

    name: str = attrs.field()
    private: bool = False
    multicast_delivery: bool = False

    @name.validator
    def _check_name(self, attribute: object, value: str) -> None:
        check_room_name(value)


def hosted_room(room: HostedRoom | str) -> HostedRoom:
    """Accept a room name where a L{HostedRoom} is expected."""
    return room if isinstance(room, HostedRoom) else HostedRoom(room)


def room_address(address: RoomAddress | str) -> RoomAddress:
    """Accept C{host:port} text where a L{RoomAddress} is expected."""
    return address if isinstance(address, RoomAddress) else RoomAddress.parse(address)


class AnnouncerState(enum.Enum):
    """The states of an L{Announcer} (C{announce.dot})."""

    WAITING = "waiting"
    """Made; nothing signed yet (the socket is not ready)."""
    ANNOUNCING = "announcing"
    """Signed; sending on the schedule (bursting, then steady)."""
    GONE = "gone"
    """Said goodbye; sends nothing more (final)."""


class Announcer:
    """The signed announcements of a host's rooms and when to send them.

    C{next_counter()} returns the next value of the host's persisted
    counter C{T} (strictly increasing; persistence is the caller's job).
    It is called once per room at L{start}, once per room whenever
    L{update_addresses} changes the content, once for a room added
    later, and once per room for a goodbye.
    """

    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        next_counter: Callable[[], int],
        rooms: Iterable[HostedRoom | str],
        addresses: Sequence[RoomAddress | str],
        schedule: AnnounceSchedule,
        lifetime: int = DEFAULT_LIFETIME,
    ) -> None:
        self.private_key = private_key
        self.next_counter = next_counter
        self.rooms = tuple(hosted_room(r) for r in rooms)
        self.addresses = tuple(room_address(a) for a in addresses)
        self.schedule = schedule
        self.lifetime = lifetime
        self.state = AnnouncerState.WAITING
        self.announcements: tuple[Announcement, ...] = ()
        """The signed announcements currently sent (empty before start)."""
        self._next_at: float | None = None

    # -- events -------------------------------------------------------------------

    def start(self, now: float) -> None:
        """The socket is ready: sign every room and start the schedule (the
        first announcement is due after the schedule's start-up delay)."""
        if self.state is not AnnouncerState.WAITING:
            return
        self.state = AnnouncerState.ANNOUNCING
        self._sign_all()
        self._restart(now)

    def update_addresses(
        self, addresses: Sequence[RoomAddress | str], now: float
    ) -> None:
        """The room server moved: re-sign with new counters and announce the
        new addresses quickly (the burst starts again)."""
        self.addresses = tuple(room_address(a) for a in addresses)
        if self.state is AnnouncerState.ANNOUNCING:
            self._sign_all()
            self._restart(now)

    def add_room(self, room: HostedRoom | str) -> list[Announcement]:
        """Start announcing another room; returns its announcement to send
        now (empty if the room is already announced or not announcing)."""
        room = hosted_room(room)
        if any(r.name == room.name for r in self.rooms):
            return []
        self.rooms += (room,)
        if self.state is not AnnouncerState.ANNOUNCING:
            return []  # start() signs every room
        announcement = self._sign(room)
        self.announcements += (announcement,)
        return [announcement]

    def remove_room(self, name: str) -> Goodbye | None:
        """Stop announcing room C{name}; returns its signed goodbye to send
        now (C{None} if it was not announced)."""
        if not any(r.name == name for r in self.rooms):
            return None
        self.rooms = tuple(r for r in self.rooms if r.name != name)
        if self.state is not AnnouncerState.ANNOUNCING:
            return None
        self.announcements = tuple(a for a in self.announcements if a.room != name)
        return Goodbye.sign(self.private_key, name, self.next_counter())

    def say_goodbye(self) -> list[Goodbye]:
        """Stop announcing; returns a signed goodbye for every room (each
        with a new counter).  Only the first call returns any.
        L{announcements} keeps the last ones sent."""
        was_announcing = self.state is AnnouncerState.ANNOUNCING
        self.state = AnnouncerState.GONE
        self._next_at = None
        if not was_announcing:
            return []
        goodbyes = [
            Goodbye.sign(self.private_key, room.name, self.next_counter())
            for room in self.rooms
        ]
        return goodbyes

    # -- time -------------------------------------------------------------------

    def due(self, now: float) -> list[Announcement]:
        """The announcements to send at C{now} (every room's, or none if
        it is not yet time); moves the schedule on when it returns some."""
        if self._next_at is None or self._next_at > now + TIME_TOLERANCE:
            return []
        self._next_at = now + self.schedule.next_delay()
        return list(self.announcements)

    def next_due(self) -> float | None:
        """When L{due} will next return announcements, or C{None}."""
        return self._next_at

    # -- internals ----------------------------------------------------------------

    def _restart(self, now: float) -> None:
        self.schedule.restart()
        self._next_at = now + self.schedule.next_delay()

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
