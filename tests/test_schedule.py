"""Tests for the announce schedule in chatroom.core.schedule."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatroom.core.schedule import AnnounceSchedule


class FixedRandom:
    """A random source that always returns the same value."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        """Return the fixed value."""
        return self.value


class AnnounceScheduleTests(SynchronousTestCase):
    """The schedule bursts, doubles, settles and restarts."""

    def test_without_jitter(self) -> None:
        """With the random source at its midpoint the delays are exactly the
        doubling sequence up to the steady interval."""
        schedule = AnnounceSchedule(FixedRandom(0.5))
        delays = [schedule.next_delay() for _ in range(10)]
        self.assertEqual(
            delays, [0.125, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
        )

    def test_jitter_bounds(self) -> None:
        """The random source's extremes give the +-10 % bounds."""
        low = AnnounceSchedule(FixedRandom(0.0))
        high = AnnounceSchedule(FixedRandom(0.9999999))
        self.assertEqual([low.next_delay() for _ in range(3)], [0.0, 0.9, 1.8])
        high_delays = [high.next_delay() for _ in range(9)]
        self.assertAlmostEqual(high_delays[0], 0.25, places=5)
        self.assertAlmostEqual(high_delays[1], 1.1, places=5)
        self.assertAlmostEqual(high_delays[-1], 66.0, places=4)

    def test_restart(self) -> None:
        """restart() begins the burst again."""
        schedule = AnnounceSchedule(FixedRandom(0.5))
        for _ in range(12):
            schedule.next_delay()
        self.assertEqual(schedule.next_delay(), 60.0)
        schedule.restart()
        self.assertEqual([schedule.next_delay() for _ in range(3)], [0.125, 1.0, 2.0])

    def test_custom_intervals(self) -> None:
        """Other initial and steady intervals are honoured, and a steady
        interval that is not a power-of-two multiple is reached exactly."""
        schedule = AnnounceSchedule(FixedRandom(0.5), initial=0.5, steady=3.0)
        self.assertEqual(
            [schedule.next_delay() for _ in range(6)], [0.125, 0.5, 1.0, 2.0, 3.0, 3.0]
        )

    def test_bad_parameters(self) -> None:
        """Nonsense parameters are refused with a sentence."""
        for kwargs in ({"initial": 0}, {"initial": 90}, {"jitter": 1}):
            with self.assertRaises(ValueError) as caught:
                AnnounceSchedule(FixedRandom(0.5), **kwargs)  # type: ignore[arg-type]
            self.assertTrue(str(caught.exception).endswith("."))

    @given(st.integers(0, 2**32), st.floats(0.1, 10), st.floats(10, 600))
    def test_property_bounds(self, seed: int, initial: float, steady: float) -> None:
        """For any seed and intervals, every delay is within its jittered
        bounds, the sequence never exceeds the steady interval plus jitter,
        and it reaches the steady interval."""
        schedule = AnnounceSchedule(random.Random(seed), initial=initial, steady=steady)
        first = schedule.next_delay()
        self.assertTrue(0 <= first <= 0.25)
        base = initial
        for _ in range(40):
            delay = schedule.next_delay()
            self.assertTrue(base * 0.9 <= delay <= base * 1.1, (base, delay))
            base = min(base * 2, steady)
        self.assertEqual(base, steady)
