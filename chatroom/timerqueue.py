# -*- test-case-name: tests.test_timerqueue -*-
"""One timer for the next deadlines of many objects.

A host has one deadline per connection at any time (the handshake,
registration, PING or close deadline of its phase, L{chatroom.core.lifecycle})
and most connections are idle members.  A Twisted C{DelayedCall} per
connection costs about 600 bytes with its bound methods, and every
rescheduling leaves the cancelled call in the reactor's heap until the
reactor compacts it.  L{TimerQueue} keeps every deadline in one heap of
small entries and holds a single C{DelayedCall}, for the earliest.

Deadlines run in time order, ties in the order they were scheduled, as
separate C{callLater}s would; each owner is called when the clock reaches
its deadline (at the same reactor turn a C{callLater} of the same delay
would run), never before.  docs/benchmarks.rst, "One idle timer per host",
has the measurements.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Protocol

from twisted.logger import Logger

#: Cancelled entries are dropped from the heap once there are more than this
#: many and they are more than half of it (Twisted's reactor does the same
#: for cancelled calls); until then they hold no reference to their owner.
COMPACT_AFTER = 50


class DeadlineOwner(Protocol):
    """What a L{TimerQueue} calls when a deadline passes."""

    def deadline_passed(self) -> None:
        """The deadline scheduled for this owner passed; its entry is done
        (schedule a new one if another deadline follows)."""


class TimerQueue:
    """The next deadline of many owners, one C{DelayedCall} for all.

    An entry is a list C{[when, sequence, owner]}; its owner keeps it to
    cancel it.  A cancelled entry's owner is set to C{None} at once, so a
    gone connection is not kept alive by its stale deadline.

    @param clock: an C{IReactorTime}.
    """

    log = Logger()

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self._heap: list[list[Any]] = []
        self._sequence = itertools.count()
        self._call: Any = None
        self._cancelled = 0

    def __len__(self) -> int:
        """Entries held, cancelled ones not yet dropped included."""
        return len(self._heap)

    def schedule(self, owner: DeadlineOwner, when: float) -> list[Any]:
        """Call C{owner.deadline_passed()} once the clock reaches C{when}
        (seconds, the clock's time scale).

        @return: the entry, for L{cancel}.
        """
        entry = [when, next(self._sequence), owner]
        heapq.heappush(self._heap, entry)
        call = self._call
        if call is None:
            self._call = self.clock.callLater(
                max(0.0, when - self.clock.seconds()), self._run
            )
        elif when < call.getTime():
            call.reset(max(0.0, when - self.clock.seconds()))
        return entry

    def cancel(self, entry: list[Any]) -> None:
        """The deadline of C{entry} no longer applies (a no-op if it ran or
        was cancelled already)."""
        if entry[2] is None:
            return
        entry[2] = None
        self._cancelled += 1
        heap = self._drop_cancelled_head()
        if not heap:
            self._stop()
        elif self._cancelled > COMPACT_AFTER and self._cancelled > len(heap) >> 1:
            self._heap = [e for e in heap if e[2] is not None]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def stop(self) -> None:
        """Forget every entry and stop the timer (the host is stopping)."""
        for entry in self._heap:
            entry[2] = None
        self._heap = []
        self._cancelled = 0
        self._stop()

    def _drop_cancelled_head(self) -> list[list[Any]]:
        """Pop cancelled entries off the top of the heap, so that its first
        entry is a live deadline (or it is empty); returns the heap."""
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
            self._cancelled -= 1
        return heap

    def _stop(self) -> None:
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None

    def _run(self) -> None:
        """Call every owner whose deadline passed, then wait for the next."""
        self._call = None
        now = self.clock.seconds()
        heap = self._heap
        # A deadline an owner schedules while we run lands in the heap and
        # runs in this loop only if it is already due.
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            owner = entry[2]
            if owner is None:
                self._cancelled -= 1
                continue
            entry[2] = None
            try:
                owner.deadline_passed()
            except Exception:
                self.log.failure("Deadline of {owner!r} failed", owner=owner)
            # An owner may have scheduled (and started the timer) meanwhile.
            heap = self._heap
        heap = self._drop_cancelled_head()
        if not heap:
            self._stop()
            return
        wait = max(0.0, heap[0][0] - self.clock.seconds())
        if self._call is None:
            self._call = self.clock.callLater(wait, self._run)
        elif self._call.getTime() != heap[0][0]:
            self._call.reset(wait)
