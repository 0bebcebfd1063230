# -*- test-case-name: tests.test_schedule -*-
"""The announce schedule: a burst at start doubling to a steady interval, with jitter.

A host announces each room at start, then after 1 s, 2 s, 4 s ... doubling
until the steady interval (60 s by default), and then every steady interval.
Every delay is multiplied by a random factor in C{[1 - jitter, 1 + jitter]}
so that hosts that started together (after a power cut) drift apart.  The
very first announcement waits a random 0 to C{first_delay_max} seconds for
the same reason (mDNS waits 0-250 ms before its first probe).

Pure: the random source is injected and no clock is read; the edge asks for
the next delay and arms its own timer.  State diagram:
C{docs/state-machines/announce.dot}.
"""

from __future__ import annotations

from typing import Protocol

import attrs

DEFAULT_INITIAL_INTERVAL = 1.0
DEFAULT_STEADY_INTERVAL = 60.0
DEFAULT_JITTER = 0.1
DEFAULT_FIRST_DELAY_MAX = 0.25


class RandomSource(Protocol):
    """What the schedule needs from a random source (C{random.Random} fits)."""

    def random(self) -> float:
        """Return a float in C{[0, 1)}."""


@attrs.define
class AnnounceSchedule:
    """The sequence of delays between one announcement and the next.

    Call L{next_delay} after each announcement (and once at start) to
    learn how long to wait before the next one; call L{restart} when the
    announcement's content changes, to announce the change quickly.
    """

    random: RandomSource
    initial: float = DEFAULT_INITIAL_INTERVAL
    steady: float = DEFAULT_STEADY_INTERVAL
    jitter: float = DEFAULT_JITTER
    first_delay_max: float = DEFAULT_FIRST_DELAY_MAX
    _next_base: float | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        if not 0 < self.initial <= self.steady:
            raise ValueError(
                "The initial announce interval must be positive and no longer"
                " than the steady interval."
            )
        if not 0 <= self.jitter < 1:
            raise ValueError("Announce jitter must be at least 0 and below 1.")
        if self.first_delay_max < 0:
            raise ValueError("The first announce delay cannot be negative.")

    def next_delay(self) -> float:
        """Return the seconds to wait before the next announcement.

        The first call after construction or L{restart} gives the
        start-up delay (0 to C{first_delay_max}); later calls give the
        doubling sequence, capped at the steady interval, with jitter.
        """
        if self._next_base is None:
            self._next_base = self.initial
            return self.random.random() * self.first_delay_max
        base = self._next_base
        self._next_base = min(base * 2, self.steady)
        factor = 1 + self.jitter * (2 * self.random.random() - 1)
        return base * factor

    def restart(self) -> None:
        """Start the burst again (the content of the announcement changed)."""
        self._next_base = None
