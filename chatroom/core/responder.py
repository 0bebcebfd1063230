# -*- test-case-name: tests.test_discovery_responder -*-
"""Answering discovery queries: which held announcements to answer with, when, and when not.

A L{Responder} is used by a host (for its own rooms) and by a
listener (for announcements a participant relays verbatim).  For every
query it decides, following C{docs/protocol-discovery.rst} ("Answering
queries"):

1. whether the source may be answered at all (10 queries a second per
   source address, 100 in all, on L{chatroom.core.tokenbucket.KeyedRateLimit});
2. which held, unexpired announcements match, and how many answers fit in
   three times the query's size;
3. when to send each one: after a random 20-120 ms, unless an answer to
   the same query for the same room with the same or a newer C{T} is seen
   meanwhile (suppression).

Pure: C{now} is passed into every call and randomness is injected.  The
responder never sends: L{Responder.due} returns the answers whose time
has come, and L{Responder.next_due} says when to call it next.  State
diagram: C{docs/state-machines/responder.dot}.
"""

from __future__ import annotations

from collections import Counter

import attrs

from chatroom.core.directory import RoomKey
from chatroom.core.discovery import Announcement, Answer, Goodbye, Query
from chatroom.core.schedule import RandomSource
from chatroom.core.tokenbucket import KeyedRateLimit

Address = tuple[str, int]
"""A UDP address: (IPv4 address text, port)."""

ANSWER_DELAY_RANGE = (0.020, 0.120)
"""Answers wait a random 20-120 ms so that responders do not all answer at
once and can see (and suppress for) each other's answers (LIMITS.md)."""

ANSWER_SIZE_FACTOR = 3
"""All answers to one query together are at most this many times its size:
no reflection amplification (DESIGN.md section 4)."""

QUERIES_PER_SOURCE_PER_SECOND = 10
"""Queries answered per source address per second (LIMITS.md)."""

QUERIES_PER_SECOND_TOTAL = 100
"""A query flood from many (possibly spoofed) sources still costs at most
this many answered queries a second."""

MAX_RATE_LIMITED_SOURCES = 1024
"""Source addresses whose query buckets are remembered."""

MAX_PENDING_ANSWERS = 256
"""Answers waiting for their delay at any one time."""

TIME_TOLERANCE = 1e-9
"""Seconds: a due time this close to C{now} counts as reached.  A timer
armed for C{due - now} seconds fires at C{now + (due - now)}, which float
rounding can put a hair before C{due}."""


@attrs.frozen
class Send:
    """One datagram to send: C{data} to the UDP C{address}."""

    data: bytes
    address: Address


@attrs.frozen
class _Held:
    announcement: Announcement
    data: bytes
    expires_at: float | None  # None: our own, never expires


@attrs.frozen
class _Pending:
    counter: int
    due: float
    send: Send


class Responder:
    """The announcements a node answers for, and the answers waiting to go.

    C{drops} and C{stats} are the owner's counters (one set per node):
    drops counted here are C{rate-limited}, C{too-many-pending-answers}
    and C{answer-too-large}; stats C{answers-sent} and
    C{answers-suppressed}.
    """

    def __init__(
        self,
        random: RandomSource,
        drops: Counter[str],
        stats: Counter[str],
        rate_limit: KeyedRateLimit[str] | None = None,
    ) -> None:
        self._random = random
        self._drops = drops
        self._stats = stats
        self._rate_limit: KeyedRateLimit[str] = (
            rate_limit
            if rate_limit is not None
            else KeyedRateLimit(
                QUERIES_PER_SOURCE_PER_SECOND,
                QUERIES_PER_SECOND_TOTAL,
                MAX_RATE_LIMITED_SOURCES,
            )
        )
        self._held: dict[RoomKey, _Held] = {}
        self._pending: dict[tuple[bytes, RoomKey], _Pending] = {}

    # -- what we answer for ---------------------------------------------------

    def hold(self, announcement: Announcement, expires_at: float | None) -> None:
        """Answer for C{announcement} (verified) until C{expires_at}
        (C{None}: until released).  Replaces an older one for the room;
        an older one than held is ignored."""
        current = self._held.get(announcement.key)
        if current is not None and current.announcement.counter > announcement.counter:
            return
        self._held[announcement.key] = _Held(
            announcement, announcement.to_bytes(), expires_at
        )

    def release(self, key: RoomKey) -> None:
        """Stop answering for room C{key}."""
        self._held.pop(key, None)

    def held(self) -> list[Announcement]:
        """The announcements currently answered for."""
        return [h.announcement for h in self._held.values()]

    def holds(self, statement: Announcement | Goodbye) -> bool:
        """True if C{statement} is, byte for byte, an announcement held
        here (so its signature was checked before)."""
        held = self._held.get(statement.key)
        return held is not None and held.announcement == statement

    # -- queries and answers ----------------------------------------------------

    def query_received(
        self, query: Query, query_size: int, source: Address, now: float
    ) -> None:
        """Decide the answers to C{query} (C{query_size} bytes, from
        C{source}, heard at C{now}); they become L{due} later."""
        matches = [
            h
            for h in self._held.values()
            if (h.expires_at is None or h.expires_at > now)
            and query.matches(h.announcement)
        ]
        if not matches:
            return  # costs the source nothing: nothing to amplify
        if not self._rate_limit.allow(source[0], now):
            self._drops["rate-limited"] += 1
            return
        budget = ANSWER_SIZE_FACTOR * query_size
        low, high = ANSWER_DELAY_RANGE
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
            due = now + low + (high - low) * self._random.random()
            self._pending[key] = _Pending(
                held.announcement.counter, due, Send(data, source)
            )

    def answer_seen(self, answer: Answer) -> None:
        """Note someone else's (verified) answer; suppress ours to the same
        query for the same room if theirs is as new or newer."""
        key = (answer.query_id, answer.announcement.key)
        pending = self._pending.get(key)
        if pending is not None and answer.announcement.counter >= pending.counter:
            del self._pending[key]
            self._stats["answers-suppressed"] += 1

    # -- time -------------------------------------------------------------------

    def due(self, now: float) -> list[Send]:
        """Remove and return the answers whose delay is over at C{now},
        earliest first."""
        ready = sorted(
            (p.due, key)
            for key, p in self._pending.items()
            if p.due <= now + TIME_TOLERANCE
        )
        sends = [self._pending.pop(key).send for _, key in ready]
        self._stats["answers-sent"] += len(sends)
        return sends

    def next_due(self) -> float | None:
        """When the next pending answer is due, or C{None} if none waits."""
        return min((p.due for p in self._pending.values()), default=None)

    def stop(self) -> None:
        """Forget every pending answer (the node stops or said goodbye)."""
        self._pending.clear()
