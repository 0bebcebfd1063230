"""Tests for a host's announcements in chatroom.core.announcer (pure, no clock)."""

from __future__ import annotations

import itertools

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.trial.unittest import SynchronousTestCase

from chatroom.core.announcer import Announcer, AnnouncerState, HostedRoom
from chatroom.core.discovery import ParseError, RoomAddress
from chatroom.core.schedule import AnnounceSchedule

KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)


class Half:
    """A random source whose random() is always 0.5: no jitter, and the
    first announcement waits 0.125 s."""

    def random(self) -> float:
        """Return 0.5."""
        return 0.5


class Counter:
    """A fake persisted counter: 1, 2, 3 ..."""

    def __init__(self) -> None:
        self.values = itertools.count(1)
        self.calls = 0

    def __call__(self) -> int:
        """Return the next value."""
        self.calls += 1
        return next(self.values)


def make(rooms=("lobby",), counter: Counter | None = None) -> Announcer:
    """An announcer with a jitter-free schedule."""
    return Announcer(
        KEY,
        counter or Counter(),
        rooms,
        ["192.0.2.10:6697"],
        AnnounceSchedule(Half()),
        lifetime=180,
    )


def run(announcer: Announcer, until: float) -> list[tuple[float, list[str]]]:
    """Call due() at every next_due() up to ``until``; return (time, rooms)."""
    sent = []
    while (at := announcer.next_due()) is not None and at <= until:
        sent.append((at, [a.room for a in announcer.due(at)]))
    return sent


class ScheduleTests(SynchronousTestCase):
    """Signed once, sent on the schedule, the same bytes each time."""

    def test_nothing_before_start(self) -> None:
        announcer = make()
        self.assertIs(announcer.state, AnnouncerState.WAITING)
        self.assertIsNone(announcer.next_due())
        self.assertEqual(announcer.due(100.0), [])
        self.assertEqual(announcer.announcements, ())

    def test_burst_then_steady(self) -> None:
        """Due at 0.125 s, then 1, 2, 4 ... s later up to 60 s, signed once."""
        counter = Counter()
        announcer = make(counter=counter)
        announcer.start(0.0)
        times = [t for t, _ in run(announcer, 200.0)]
        self.assertEqual(
            times,
            [0.125, 1.125, 3.125, 7.125, 15.125, 31.125, 63.125, 123.125, 183.125],
        )
        self.assertEqual(counter.calls, 1)
        self.assertEqual(announcer.announcements[0].counter, 1)

    def test_not_due_early(self) -> None:
        announcer = make()
        announcer.start(0.0)
        self.assertEqual(announcer.due(0.1), [])
        self.assertEqual(len(announcer.due(0.125)), 1)
        self.assertEqual(announcer.next_due(), 1.125)

    def test_several_rooms_and_flags(self) -> None:
        """Each room has its own announcement, counter and flags."""
        announcer = make(
            rooms=[
                HostedRoom("lobby"),
                HostedRoom("staff", private=True, multicast_delivery=True),
            ]
        )
        announcer.start(0.0)
        sent = announcer.due(0.125)
        self.assertEqual([a.room for a in sent], ["lobby", "staff"])
        self.assertEqual(
            [(a.private, a.multicast_delivery) for a in sent],
            [(False, False), (True, True)],
        )
        self.assertEqual([a.counter for a in sent], [1, 2])

    def test_update_addresses(self) -> None:
        """A new address takes a new counter and restarts the burst."""
        announcer = make()
        announcer.start(0.0)
        run(announcer, 200.0)
        announcer.update_addresses(["[2001:db8::1]:7000"], 200.0)
        self.assertEqual(
            run(announcer, 202.0), [(200.125, ["lobby"]), (201.125, ["lobby"])]
        )
        [a] = announcer.announcements
        self.assertEqual(
            (a.counter, a.addresses), (2, (RoomAddress("2001:db8::1", 7000),))
        )

    def test_bad_room_name_refused(self) -> None:
        with self.assertRaises(ParseError):
            HostedRoom("no spaces")


class RoomChangeTests(SynchronousTestCase):
    """Rooms opened and closed while announcing, and the final goodbye."""

    def test_add_room(self) -> None:
        """An added room is signed and returned at once, and joins the
        schedule; adding it again does nothing."""
        announcer = make(rooms=())
        announcer.start(0.0)
        self.assertEqual(announcer.due(0.125), [])
        [a] = announcer.add_room("dev")
        self.assertEqual((a.room, a.counter), ("dev", 1))
        self.assertEqual(announcer.add_room("dev"), [])
        self.assertEqual([x.room for x in announcer.due(1.125)], ["dev"])

    def test_add_room_before_start(self) -> None:
        """Before start nothing is signed; start signs every room."""
        announcer = make(rooms=())
        self.assertEqual(announcer.add_room("dev"), [])
        announcer.start(0.0)
        self.assertEqual([a.room for a in announcer.announcements], ["dev"])

    def test_remove_room(self) -> None:
        """A removed room gets a goodbye with a newer counter."""
        announcer = make(rooms=("lobby", "dev"))
        announcer.start(0.0)
        goodbye = announcer.remove_room("dev")
        assert goodbye is not None
        self.assertEqual((goodbye.room, goodbye.counter), ("dev", 3))
        goodbye.verify()
        self.assertEqual([a.room for a in announcer.announcements], ["lobby"])
        self.assertIsNone(announcer.remove_room("dev"))

    def test_say_goodbye(self) -> None:
        """One goodbye per room with new counters, then silence; only the
        first call returns goodbyes."""
        announcer = make(rooms=("lobby", "dev"))
        announcer.start(0.0)
        goodbyes = announcer.say_goodbye()
        self.assertEqual(
            [(g.room, g.counter) for g in goodbyes], [("lobby", 3), ("dev", 4)]
        )
        self.assertEqual(announcer.say_goodbye(), [])
        self.assertIs(announcer.state, AnnouncerState.GONE)
        self.assertIsNone(announcer.next_due())
        self.assertEqual(announcer.due(1000.0), [])
        self.assertEqual(announcer.add_room("late"), [])
        announcer.start(2000.0)
        self.assertIsNone(announcer.next_due())

    def test_goodbye_before_start(self) -> None:
        """A host that never started has nothing to say goodbye for."""
        counter = Counter()
        announcer = make(counter=counter)
        self.assertEqual(announcer.say_goodbye(), [])
        self.assertEqual(counter.calls, 0)
