# -*- test-case-name: tests.test_directory -*-
"""The room directory: the newest valid announcement per room, with expiry and goodbyes.

A listener feeds every verified announcement, goodbye and answer into a
L{RoomDirectory}.  For each room C{(Q, R)} it keeps the announcement
with the highest counter C{T}; it drops stale and conflicting ones and
counts why; it forgets a room when its lifetime runs out or a signed goodbye
arrives; and it never holds more than a fixed number of entries.

Pure: C{now} (float seconds on any monotonic scale) is passed into every
method; the directory never reads a clock.  It trusts that announcements and
goodbyes were verified (they come from C{from_bytes} or C{sign}).
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import itertools
from collections import Counter

import attrs

from chatroom.core.discovery import Announcement, Answer, Goodbye

DEFAULT_MAX_ENTRIES = 4096
DEFAULT_TOMBSTONE_LIFETIME = 600.0
"""Seconds a goodbye keeps older announcements of its room out."""

RoomKey = tuple[bytes, str]


class Outcome(enum.Enum):
    """What offering an announcement or goodbye did to the directory.

    Outcomes whose value is a drop reason left the directory unchanged and
    were counted in L{RoomDirectory.drops}.
    """

    ADDED = "added"
    UPDATED = "updated"
    REFRESHED = "refreshed"
    REMOVED = "removed"
    EXPIRED = "expired"
    EVICTED = "evicted"
    OLDER_COUNTER = "older-counter"
    CONFLICTING_CONTENT = "conflicting-content"
    AFTER_GOODBYE = "after-goodbye"
    OLDER_GOODBYE = "older-goodbye"
    ZERO_LIFETIME = "zero-lifetime"

    @property
    def dropped(self) -> bool:
        """True if the offer was refused and the directory did not change."""
        return self in _DROPS

    @property
    def changed(self) -> bool:
        """True if the set of rooms or a room's announcement changed."""
        return self in (
            Outcome.ADDED,
            Outcome.UPDATED,
            Outcome.REMOVED,
            Outcome.EXPIRED,
            Outcome.EVICTED,
        )


_DROPS = frozenset(
    [
        Outcome.OLDER_COUNTER,
        Outcome.CONFLICTING_CONTENT,
        Outcome.AFTER_GOODBYE,
        Outcome.OLDER_GOODBYE,
        Outcome.ZERO_LIFETIME,
    ]
)


@attrs.frozen
class DirectoryEntry:
    """One room as the directory knows it.

    C{first_heard} and C{last_heard} are the C{now} values of the first
    offer of this room and of the last offer that was accepted (a refresh
    counts); C{expires_at} is when it will be forgotten.  The bytes to relay
    are C{announcement.to_bytes()}, verbatim.
    """

    announcement: Announcement
    first_heard: float
    last_heard: float
    expires_at: float

    @property
    def key(self) -> RoomKey:
        """The room's identity C{(Q, R)}."""
        return self.announcement.key

    def remaining(self, now: float) -> float:
        """Seconds left before this entry expires (never negative)."""
        return max(0.0, self.expires_at - now)


@attrs.frozen
class _Tombstone:
    counter: int
    expires_at: float


@attrs.frozen
class DirectoryChange:
    """A change to report to observers: what happened, and to which room.

    C{entry} is the entry as it is now (or was, for removals).
    """

    outcome: Outcome
    entry: DirectoryEntry


class RoomDirectory:
    """The newest valid announcement per room C{(Q, R)}, bounded in size.

    Every C{offer_*} and C{expire} call takes C{now}.  Drops are counted
    by reason in L{drops}; pass C{drops} to count them into a counter
    shared with the code that feeds the directory (the listener counts
    malformed and forged datagrams there too), so that there is one set of
    drop counters.
    """

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        tombstone_lifetime: float = DEFAULT_TOMBSTONE_LIFETIME,
        drops: Counter[str] | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError("The room directory must hold at least one entry.")
        self.max_entries = max_entries
        self.tombstone_lifetime = tombstone_lifetime
        self.drops: Counter[str] = drops if drops is not None else Counter()
        self._entries: dict[RoomKey, DirectoryEntry | _Tombstone] = {}
        # How many held rooms (entries and tombstones) each host key has.
        self._keys: Counter[bytes] = Counter()
        # Min-heap of (expires_at, sequence, key); stale items (the entry
        # changed since) are skipped when popped.
        self._heap: list[tuple[float, int, RoomKey]] = []
        self._sequence = itertools.count()

    # -- changing ---------------------------------------------------------

    def offer_announcement(
        self,
        announcement: Announcement,
        now: float,
        lifetime: float | None = None,
    ) -> list[DirectoryChange]:
        """Offer a verified announcement heard at C{now}.

        C{lifetime} overrides the announcement's own (an answer's remaining
        lifetime, already capped by L{Answer.lifetime}).  Returns the
        changes made: usually one; an eviction adds one; empty when the
        announcement was dropped (the reason is counted in L{drops}).
        """
        changes = self.expire(now)
        if lifetime is None:
            lifetime = announcement.lifetime
        lifetime = min(float(lifetime), float(announcement.lifetime))
        if lifetime <= 0:
            self._drop(Outcome.ZERO_LIFETIME)
            return changes
        key = announcement.key
        held = self._entries.get(key)
        expires_at = now + lifetime
        if isinstance(held, _Tombstone):
            if announcement.counter <= held.counter:
                self._drop(Outcome.AFTER_GOODBYE)
                return changes
            held = None
        if held is None:
            changes += self._make_room(now)
            entry = DirectoryEntry(announcement, now, now, expires_at)
            self._store(key, entry)
            changes.append(DirectoryChange(Outcome.ADDED, entry))
            return changes
        if announcement.counter < held.announcement.counter:
            self._drop(Outcome.OLDER_COUNTER)
            return changes
        if announcement.counter == held.announcement.counter:
            if (
                announcement != held.announcement
            ):  # canonical: equal fields, equal bytes
                self._drop(Outcome.CONFLICTING_CONTENT)
                return changes
            entry = attrs.evolve(
                held, last_heard=now, expires_at=max(held.expires_at, expires_at)
            )
            self._store(key, entry)
            changes.append(DirectoryChange(Outcome.REFRESHED, entry))
            return changes
        entry = DirectoryEntry(announcement, held.first_heard, now, expires_at)
        self._store(key, entry)
        changes.append(DirectoryChange(Outcome.UPDATED, entry))
        return changes

    def offer_answer(self, answer: Answer, now: float) -> list[DirectoryChange]:
        """Offer the announcement inside a verified answer, kept for the
        answer's capped lifetime."""
        return self.offer_announcement(answer.announcement, now, answer.lifetime)

    def offer_goodbye(self, goodbye: Goodbye, now: float) -> list[DirectoryChange]:
        """Offer a verified goodbye heard at C{now}.

        A goodbye whose counter is at least the held announcement's removes
        the room and leaves a tombstone, so older announcements of the room
        are dropped for L{tombstone_lifetime} seconds.  An older
        goodbye is dropped and counted.
        """
        changes = self.expire(now)
        key = goodbye.key
        held = self._entries.get(key)
        tombstone = _Tombstone(goodbye.counter, now + self.tombstone_lifetime)
        if isinstance(held, DirectoryEntry):
            if goodbye.counter < held.announcement.counter:
                self._drop(Outcome.OLDER_GOODBYE)
                return changes
            self._store(key, tombstone)
            changes.append(DirectoryChange(Outcome.REMOVED, held))
            return changes
        if isinstance(held, _Tombstone):
            if goodbye.counter < held.counter:
                self._drop(Outcome.OLDER_GOODBYE)
            elif goodbye.counter > held.counter:
                self._store(key, tombstone)
            return changes
        changes += self._make_room(now)
        self._store(key, tombstone)
        return changes

    def expire(self, now: float) -> list[DirectoryChange]:
        """Forget every entry and tombstone whose time is up at C{now};
        return the rooms that expired."""
        changes = []
        while self._heap and self._heap[0][0] <= now:
            expires_at, _, key = heapq.heappop(self._heap)
            held = self._entries.get(key)
            if held is None or held.expires_at != expires_at:
                continue  # stale heap item
            self._forget(key)
            if isinstance(held, DirectoryEntry):
                changes.append(DirectoryChange(Outcome.EXPIRED, held))
        return changes

    # -- reading ----------------------------------------------------------

    def knows_key(self, q: bytes) -> bool:
        """True if the directory holds a room (or a goodbye's tombstone) of
        host key C{q}: a key whose signature was verified before.  Constant
        time, so it can be asked for every datagram of a flood."""
        return q in self._keys

    def lookup(self, q: bytes, room: str, now: float) -> DirectoryEntry | None:
        """Return the live entry for room C{(q, room)}, or C{None}."""
        held = self._entries.get((q, room))
        if isinstance(held, DirectoryEntry) and held.expires_at > now:
            return held
        return None

    def find(
        self, now: float, room: str | None = None, fingerprint_prefix: bytes = b""
    ) -> list[DirectoryEntry]:
        """Return live entries matching C{room} (any if C{None}) and whose
        key fingerprint starts with C{fingerprint_prefix}, newest heard
        first."""
        found = [
            entry
            for entry in self.entries(now)
            if (room is None or entry.announcement.room == room)
            and hashlib.sha256(entry.announcement.q)
            .digest()
            .startswith(fingerprint_prefix)
        ]
        found.sort(key=lambda e: e.last_heard, reverse=True)
        return found

    def entries(self, now: float) -> list[DirectoryEntry]:
        """Return every live entry, ordered by room name then key."""
        live = [
            held
            for held in self._entries.values()
            if isinstance(held, DirectoryEntry) and held.expires_at > now
        ]
        live.sort(key=lambda e: (e.announcement.room, e.announcement.q))
        return live

    @property
    def queued_expiries(self) -> int:
        """How many expiry times are queued, stale ones included: the
        memory the directory uses besides its entries.  Kept below four
        times the number of entries plus 64."""
        return len(self._heap)

    def __len__(self) -> int:
        """The number of entries held, tombstones included."""
        return len(self._entries)

    # -- internals --------------------------------------------------------

    def _drop(self, outcome: Outcome) -> None:
        self.drops[outcome.value] += 1

    def _store(self, key: RoomKey, held: DirectoryEntry | _Tombstone) -> None:
        if key not in self._entries:
            self._keys[key[0]] += 1
        self._entries[key] = held
        heapq.heappush(self._heap, (held.expires_at, next(self._sequence), key))
        if len(self._heap) > 4 * len(self._entries) + 64:
            self._heap = [
                (h.expires_at, next(self._sequence), k)
                for k, h in self._entries.items()
            ]
            heapq.heapify(self._heap)

    def _make_room(self, now: float) -> list[DirectoryChange]:
        """Evict the soonest-expiring entries until one more fits."""
        changes = []
        while len(self._entries) >= self.max_entries:
            expires_at, _, key = heapq.heappop(self._heap)
            held = self._entries.get(key)
            if held is None or held.expires_at != expires_at:
                continue
            self._forget(key)
            if isinstance(held, DirectoryEntry):
                changes.append(DirectoryChange(Outcome.EVICTED, held))
        return changes

    def _forget(self, key: RoomKey) -> None:
        del self._entries[key]
        self._keys[key[0]] -= 1
        if not self._keys[key[0]]:
            del self._keys[key[0]]
