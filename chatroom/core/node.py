# -*- test-case-name: tests.test_discovery_node -*-
"""The discovery state of a host and of a listener: what to do with each datagram and each tick.

The Twisted edge (C{chatroom/discovery.py}) knows sockets and bytes; the
objects here know state, as txtorcon's C{TorState} does beside its
C{TorControlProtocol}:

- L{HostNode}: a host's L{chatroom.core.announcer.Announcer}
  and L{chatroom.core.responder.Responder} for its own rooms;
- L{ListenerNode}: the L{chatroom.core.directory.RoomDirectory},
  the responder for relayed announcements, and the ids of the node's own
  queries.

Each has the same three calls the edge makes: L{datagram_received}
(bytes, source address, C{now}), L{wake} (C{now}) and
L{next_wake}; the first two return what to send (and, for a
listener, what changed).  Each node keeps one C{drops} counter (by
reason: malformed, forged, over budget, stale, rate-limited ...) and one
C{stats} counter; nothing is raised for bad input.

Pure: time is passed in, randomness is injected, nothing is sent here.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any, Callable, Sequence

import attrs

from chatroom.core.announcer import Announcer, HostedRoom
from chatroom.core.directory import (
    DirectoryChange,
    Outcome,
    RoomDirectory,
    RoomKey,
)
from chatroom.core.discovery import (
    KIND_ANNOUNCEMENT,
    KIND_ANSWER,
    KIND_GOODBYE,
    KIND_QUERY,
    Announcement,
    Answer,
    Goodbye,
    Query,
    RoomAddress,
    raw_public_key,
)
from chatroom.core.receiver import Receiver
from chatroom.core.responder import TIME_TOLERANCE, Address, Responder, Send
from chatroom.core.schedule import RandomSource

SWEEP_INTERVAL = 1.0
"""Seconds between directory expiry sweeps on a listener."""

MAX_OWN_QUERY_IDS = 256
"""A listener's recent query ids, remembered so it does not answer itself."""

_HOLD = frozenset([Outcome.ADDED, Outcome.UPDATED, Outcome.REFRESHED])
_LET_GO = frozenset([Outcome.REMOVED, Outcome.EXPIRED, Outcome.EVICTED])


@attrs.frozen
class Reaction:
    """What the edge must do after a call into a node.

    C{sends}: datagrams to send now, in order.  C{changes}: directory
    changes to report (only those that alter the set of rooms or a room's
    announcement).  C{answers}: verified answers, for running searches.
    """

    sends: tuple[Send, ...] = ()
    changes: tuple[DirectoryChange, ...] = ()
    answers: tuple[Answer, ...] = ()


NOTHING = Reaction()


def _earliest(*times: float | None) -> float | None:
    return min((t for t in times if t is not None), default=None)


class HostNode:
    """A host's discovery state: announce its rooms, answer for them.

    C{group} is the discovery group's C{(address, port)}, where
    announcements and goodbyes go.  Stats: C{announcements-sent},
    C{goodbyes-sent}, and those of the receiver and responder.
    """

    def __init__(
        self, announcer: Announcer, group: Address, random: RandomSource
    ) -> None:
        self.announcer = announcer
        self.group = group
        self.drops: Counter[str] = Counter()
        """Datagrams dropped or not sent, by reason."""
        self.stats: Counter[str] = Counter()
        """Things done: datagrams received by kind, sent, suppressed."""
        self.responder = Responder(random, self.drops, self.stats)
        # A host needs queries (to answer) and answers (to suppress its
        # own); other hosts' announcements and goodbyes are none of its
        # business and are not worth a signature check.  The one key it
        # knows is its own: answers relaying its announcements are free.
        own_key = raw_public_key(announcer.private_key)
        self.receiver = Receiver(
            self.drops,
            self.stats,
            accept=(KIND_QUERY, KIND_ANSWER),
            known_key=own_key.__eq__,
            already_verified=self.responder.holds,
        )
        self._handlers: dict[int, Callable[[Any, int, Address, float], None]] = {
            KIND_QUERY: self.responder.query_received,
            KIND_ANSWER: lambda answer, *_: self.responder.answer_seen(answer),
        }

    # -- the edge's three calls ---------------------------------------------------

    def datagram_received(self, data: bytes, source: Address, now: float) -> Reaction:
        """Handle one datagram: a query is answered later (see L{wake});
        an answer by someone else may suppress ours."""
        datagram = self.receiver.receive(data, source[0], now)
        if datagram is not None:
            self._handlers[datagram.kind](datagram, len(data), source, now)
        return NOTHING

    def wake(self, now: float) -> Reaction:
        """Send what is due at C{now}: the rooms' announcements on their
        schedule and answers whose delay is over."""
        announcements = self.announcer.due(now)
        return Reaction(
            sends=tuple(self._to_group(announcements, "announcements-sent"))
            + tuple(self.responder.due(now))
        )

    def next_wake(self) -> float | None:
        """When L{wake} next has something to do, or C{None}."""
        return _earliest(self.announcer.next_due(), self.responder.next_due())

    # -- the host's own events ----------------------------------------------------

    def start(self, now: float) -> Reaction:
        """The socket is ready: sign the rooms, start the schedule."""
        self.announcer.start(now)
        self._hold_all()
        return NOTHING

    def update_addresses(
        self, addresses: Sequence[RoomAddress | str], now: float
    ) -> Reaction:
        """The room server moved: new signatures, a new burst."""
        self.announcer.update_addresses(addresses, now)
        self._hold_all()
        return NOTHING

    def add_room(self, room: HostedRoom | str) -> Reaction:
        """Announce another room at once."""
        added = self.announcer.add_room(room)
        for announcement in added:
            self.responder.hold(announcement, None)
        return Reaction(sends=tuple(self._to_group(added, "announcements-sent")))

    def remove_room(self, name: str) -> Reaction:
        """Stop announcing room C{name} and send its goodbye."""
        goodbye = self.announcer.remove_room(name)
        if goodbye is None:
            return NOTHING
        self.responder.release(goodbye.key)
        return Reaction(sends=tuple(self._to_group([goodbye], "goodbyes-sent")))

    def say_goodbye(self) -> Reaction:
        """Stop: a goodbye for every room; no more announcements or
        answers.  Only the first call sends."""
        goodbyes = self.announcer.say_goodbye()
        self.stop()
        for announcement in self.responder.held():
            self.responder.release(announcement.key)
        return Reaction(sends=tuple(self._to_group(goodbyes, "goodbyes-sent")))

    def stop(self) -> None:
        """The socket closed: forget pending answers."""
        self.responder.stop()

    # -- internals ----------------------------------------------------------------

    def _hold_all(self) -> None:
        for announcement in self.announcer.announcements:
            self.responder.hold(announcement, None)

    def _to_group(
        self, statements: Sequence[Announcement | Goodbye], stat: str
    ) -> list[Send]:
        self.stats[stat] += len(statements)
        return [Send(s.to_bytes(), self.group) for s in statements]


class ListenerNode:
    """A listener's discovery state: the room directory, relaying, and
    telling its own queries from others'.

    Stats: C{own-query} and those of the receiver and responder; the
    directory counts its drops (C{older-counter} ...) in L{drops}
    too.
    """

    def __init__(
        self, random: RandomSource, directory: RoomDirectory | None = None
    ) -> None:
        self.directory = directory if directory is not None else RoomDirectory()
        self.drops: Counter[str] = self.directory.drops
        """Datagrams dropped, by reason: the directory's counter, shared."""
        self.stats: Counter[str] = Counter()
        """Things done: datagrams received by kind, answers sent ..."""
        self.responder = Responder(random, self.drops, self.stats)
        self.receiver = Receiver(
            self.drops,
            self.stats,
            known_key=self.directory.knows_key,
            already_verified=self._already_verified,
        )
        self._own_query_ids: OrderedDict[bytes, None] = OrderedDict()
        self._held_keys: set[RoomKey] = set()
        self._next_sweep: float | None = None
        self._handlers: dict[int, Callable[[Any, int, Address, float], Reaction]] = {
            KIND_ANNOUNCEMENT: self._announcement,
            KIND_GOODBYE: self._goodbye,
            KIND_QUERY: self._query,
            KIND_ANSWER: self._answer,
        }

    # -- the edge's three calls ---------------------------------------------------

    def datagram_received(self, data: bytes, source: Address, now: float) -> Reaction:
        """Handle one datagram heard on either socket."""
        datagram = self.receiver.receive(data, source[0], now)
        if datagram is None:
            return NOTHING
        return self._handlers[datagram.kind](datagram, len(data), source, now)

    def wake(self, now: float) -> Reaction:
        """Sweep expired rooms (every second) and send due answers."""
        changes: tuple[DirectoryChange, ...] = ()
        if self._next_sweep is not None and self._next_sweep <= now + TIME_TOLERANCE:
            self._next_sweep = now + SWEEP_INTERVAL
            changes = self._apply(self.directory.expire(now))
        return Reaction(sends=tuple(self.responder.due(now)), changes=changes)

    def next_wake(self) -> float | None:
        """When L{wake} next has something to do, or C{None}."""
        return _earliest(self._next_sweep, self.responder.next_due())

    # -- the listener's own events ------------------------------------------------

    def start(self, now: float) -> None:
        """The socket is open: start the expiry sweep."""
        self._next_sweep = now + SWEEP_INTERVAL

    def stop(self) -> None:
        """The socket closed: no more sweeps or answers."""
        self._next_sweep = None
        self.responder.stop()

    def query_sent(self, query: Query) -> None:
        """Remember the id of a query this node sent, so that hearing it
        is not mistaken for someone else's query."""
        self._own_query_ids[query.query_id] = None
        while len(self._own_query_ids) > MAX_OWN_QUERY_IDS:
            self._own_query_ids.popitem(last=False)

    def hold(self, announcement: Announcement, now: float) -> None:
        """Relay this (verified) announcement: answer queries for it, and
        for newer ones of its room heard later, until the room expires or
        says goodbye."""
        self.directory.offer_announcement(announcement, now)
        entry = self.directory.lookup(announcement.q, announcement.room, now)
        self._held_keys.add(announcement.key)
        if entry is not None:
            self.responder.hold(entry.announcement, entry.expires_at)

    def release(self, q: bytes, room: str) -> None:
        """Stop relaying room C{(q, room)}."""
        self._held_keys.discard((q, room))
        self.responder.release((q, room))

    def newest(self, announcement: Announcement, now: float) -> Announcement:
        """The newest announcement the directory holds for the room of
        C{announcement} (C{announcement} itself if none is newer)."""
        entry = self.directory.lookup(announcement.q, announcement.room, now)
        if entry is not None and entry.announcement.counter > announcement.counter:
            return entry.announcement
        return announcement

    # -- handlers, one per kind ---------------------------------------------------

    def _announcement(
        self, announcement: Announcement, size: int, source: Address, now: float
    ) -> Reaction:
        return Reaction(
            changes=self._apply(self.directory.offer_announcement(announcement, now))
        )

    def _goodbye(
        self, goodbye: Goodbye, size: int, source: Address, now: float
    ) -> Reaction:
        return Reaction(changes=self._apply(self.directory.offer_goodbye(goodbye, now)))

    def _query(self, query: Query, size: int, source: Address, now: float) -> Reaction:
        if query.query_id in self._own_query_ids:
            self.stats["own-query"] += 1
        else:
            self.responder.query_received(query, size, source, now)
        return NOTHING

    def _answer(
        self, answer: Answer, size: int, source: Address, now: float
    ) -> Reaction:
        changes = self._apply(self.directory.offer_answer(answer, now))
        self.responder.answer_seen(answer)
        return Reaction(changes=changes, answers=(answer,))

    # -- internals ----------------------------------------------------------------

    def _already_verified(self, statement: Announcement | Goodbye) -> bool:
        entry = self.directory.lookup(statement.q, statement.room, float("-inf"))
        return (
            entry is not None and entry.announcement == statement
        ) or self.responder.holds(statement)

    def _apply(self, changes: list[DirectoryChange]) -> tuple[DirectoryChange, ...]:
        """Keep relayed rooms in step with the directory; return the
        changes worth reporting."""
        for change in changes:
            if change.entry.key in self._held_keys:
                if change.outcome in _HOLD:
                    self.responder.hold(
                        change.entry.announcement, change.entry.expires_at
                    )
                elif change.outcome in _LET_GO:
                    self.release(*change.entry.key)
        return tuple(change for change in changes if change.outcome.changed)
