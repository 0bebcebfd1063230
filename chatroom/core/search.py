# -*- test-case-name: tests.test_search -*-
"""Expanding-ring search: find one room with queries of growing TTL.

The search sends a query with TTL 1 and waits; if no valid answer arrives
before the ring's timeout it sends a new query with the next, wider TTL, and
so on up to the last ring; the first valid answer ends it.  It is a small
state machine with explicit states (drawn in
C{docs/state-machines/search.dot}):

- C{idle}: made, not started;
- C{waiting}: a query for ring *i* is out and its timer runs;
- C{found}: a valid answer arrived (final);
- C{not-found}: the last ring timed out (final);
- C{cancelled}: the caller gave up (final).

Pure: the clock is injected (anything with C{callLater(delay, f)} that
returns something with C{cancel()}, such as C{twisted.internet.task.Clock}
or the reactor), sending is a callback, and answers are handed in already
verified.  This module does not import C{twisted.internet}.
"""

from __future__ import annotations

import enum
import os
from typing import Any, Callable, Protocol, Sequence

import attrs

from chatroom.core.discovery import Announcement, Answer, Query

QUERY_PADDED_SIZE = 400
"""Queries are padded to this many bytes so that answers of up to three times
the size (the whole datagram limit) are allowed."""


class DelayedCall(Protocol):
    """What the search needs from a scheduled call."""

    def cancel(self) -> None:
        """Stop the call from happening."""


class CallLater(Protocol):
    """What the search needs from a clock (C{IReactorTime} fits)."""

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any) -> DelayedCall:
        """Call C{f(*args)} after C{delay} seconds."""


@attrs.frozen
class Ring:
    """One ring of the search: the query's TTL and how long to wait for an
    answer before trying the next ring."""

    ttl: int = attrs.field(
        validator=attrs.validators.and_(
            attrs.validators.instance_of(int),
            attrs.validators.ge(1),
            attrs.validators.le(255),
        )
    )
    timeout: float = attrs.field(validator=attrs.validators.gt(0))


DEFAULT_RINGS: tuple[Ring, ...] = (
    Ring(1, 0.5),
    Ring(2, 0.75),
    Ring(4, 1.0),
    Ring(8, 1.5),
    Ring(16, 2.0),
)
"""TTL 1, 2, 4, 8, 16; each timeout covers the 120 ms maximum answer delay
plus a round trip that grows with the hop count."""


class SearchState(enum.Enum):
    """The states of an L{ExpandingRingSearch}."""

    IDLE = "idle"
    WAITING = "waiting"
    FOUND = "found"
    NOT_FOUND = "not-found"
    CANCELLED = "cancelled"


@attrs.frozen
class SearchResult:
    """How a search ended.

    C{announcement} is the room found (C{None} if not found or
    cancelled); C{ttl} is the TTL of the ring whose query was answered;
    C{rings_tried} is how many queries went out.
    """

    state: SearchState
    announcement: Announcement | None
    ttl: int | None
    rings_tried: int

    @property
    def found(self) -> bool:
        """True if the room was found."""
        return self.announcement is not None


def _random_query_id() -> bytes:
    return os.urandom(8)


class ExpandingRingSearch:
    """Search for a room by name and/or key fingerprint prefix.

    C{send_query(query, ttl)} is called once per ring and must send the
    query to the group with that TTL; C{on_finished(result)} is called
    exactly once, with a L{SearchResult}, when the search is found,
    not found, or cancelled.  Feed every verified answer the edge receives
    to L{answer_received}.
    """

    def __init__(
        self,
        clock: CallLater,
        send_query: Callable[[Query, int], None],
        on_finished: Callable[[SearchResult], None],
        room: str | None = None,
        fingerprint_prefix: bytes = b"",
        rings: Sequence[Ring] = DEFAULT_RINGS,
        new_query_id: Callable[[], bytes] = _random_query_id,
    ) -> None:
        if not rings:
            raise ValueError("An expanding-ring search needs at least one ring.")
        if room is None and not fingerprint_prefix:
            raise ValueError(
                "Say which room to search for: a name, a key fingerprint, or both."
            )
        self._clock = clock
        self._send_query = send_query
        self._on_finished = on_finished
        self._template = Query(
            query_id=bytes(8), room=room, fingerprint_prefix=fingerprint_prefix
        )
        self._rings = tuple(rings)
        self._new_query_id = new_query_id
        self._ring_index = -1
        self._timer: DelayedCall | None = None
        self._ttl_by_query_id: dict[bytes, int] = {}
        self.state = SearchState.IDLE
        self.result: SearchResult | None = None

    def start(self) -> None:
        """Send the first ring's query.  Only valid in the idle state."""
        if self.state is not SearchState.IDLE:
            raise RuntimeError("This search has already been started.")
        self.state = SearchState.WAITING
        self._next_ring()

    def answer_received(self, answer: Answer) -> bool:
        """Consider a verified answer; return True if it ended the search.

        An answer counts if it echoes one of this search's query ids and
        its announcement matches the room searched for.  Anything else is
        ignored (late answers after the end included).
        """
        if self.state is not SearchState.WAITING:
            return False
        ttl = self._ttl_by_query_id.get(answer.query_id)
        if ttl is None or not self._template.matches(answer.announcement):
            return False
        self._cancel_timer()
        self._finish(SearchState.FOUND, answer.announcement, ttl)
        return True

    def cancel(self) -> None:
        """Give up; C{on_finished} is called with a cancelled result.
        Does nothing once the search has ended."""
        if self.state in (SearchState.IDLE, SearchState.WAITING):
            self._cancel_timer()
            self._finish(SearchState.CANCELLED, None, None)

    def _next_ring(self) -> None:
        self._ring_index += 1
        ring = self._rings[self._ring_index]
        query_id = self._new_query_id()
        self._ttl_by_query_id[query_id] = ring.ttl
        query = attrs.evolve(self._template, query_id=query_id).padded_to(
            QUERY_PADDED_SIZE
        )
        self._timer = self._clock.callLater(ring.timeout, self._ring_timed_out)
        self._send_query(query, ring.ttl)

    def _ring_timed_out(self) -> None:
        self._timer = None
        if self.state is not SearchState.WAITING:
            return
        if self._ring_index + 1 < len(self._rings):
            self._next_ring()
        else:
            self._finish(SearchState.NOT_FOUND, None, None)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _finish(
        self, state: SearchState, announcement: Announcement | None, ttl: int | None
    ) -> None:
        self.state = state
        self.result = SearchResult(state, announcement, ttl, self._ring_index + 1)
        self._on_finished(self.result)
