"""Tests for chatroom.core.room: the pure sequencer."""

import os
import subprocess
import sys

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from chatroom.core.room import (
    EXTENDED_JOIN,
    MESSAGE_TAGS,
    SERVER_TIME,
    NotAMember,
    Room,
)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Member:
    """A minimal member for the sequencer."""

    def __init__(self, nick):
        self.nick = nick
        self.source = nick + "!u@h"


class RoomTests(SynchronousTestCase):
    """Sequence numbers, audiences and the formatted lines of events."""

    def setUp(self):
        self.room = Room("Lobby", next_seq=7)
        self.alice, self.bob = Member("alice"), Member("bob")

    def test_names(self):
        self.assertEqual((self.room.key, self.room.channel), ("lobby", "#Lobby"))

    def test_events_numbered_in_order(self):
        """Every event takes the next number, starting at next_seq."""
        events = [
            delivery.event
            for delivery in (
                self.room.join(self.alice, 1),
                self.room.join(self.bob, 2),
                self.room.post(self.alice, "PRIVMSG", "hi", 3),
                self.room.set_topic(self.bob, "t", 4),
                self.room.leave(self.alice, "PART", "bye", 5),
            )
        ]
        self.assertEqual([e.seq for e in events], [7, 8, 9, 10, 11])
        self.assertEqual(self.room.next_seq, 12)
        self.assertEqual([e.msgid for e in events][0], "lobby:7")

    def test_audience_at_event_time(self):
        """An event goes to the members present when it happened."""
        join = self.room.join(self.alice, 1)
        self.assertEqual(join.audience, (self.alice,))
        self.room.join(self.bob, 2)
        message = self.room.post(self.alice, "PRIVMSG", "hi", 3)
        part = self.room.leave(self.bob, "PART", None, 4)
        self.assertEqual(message.audience, (self.alice, self.bob))
        self.assertEqual(part.audience, (self.alice, self.bob))
        self.assertEqual(self.room.audience, (self.alice,))

    def test_audience_shared_between_membership_changes(self):
        """Events between two membership changes share one audience tuple."""
        self.room.join(self.alice, 1)
        first = self.room.post(self.alice, "PRIVMSG", "a", 2)
        second = self.room.post(self.alice, "PRIVMSG", "b", 3)
        self.assertIs(first.audience, second.audience)

    def test_non_member_refused(self):
        """Posting, changing the topic or leaving needs membership."""
        self.assertRaises(NotAMember, self.room.post, self.alice, "PRIVMSG", "x", 1)
        self.assertRaises(NotAMember, self.room.set_topic, self.alice, "x", 1)
        self.assertRaises(NotAMember, self.room.leave, self.alice, "PART", None, 1)
        self.assertEqual(self.room.next_seq, 7)

    def test_topic(self):
        self.room.join(self.alice, 1)
        self.room.set_topic(self.alice, "news", 5000)
        self.assertEqual(
            (self.room.topic.text, self.room.topic.setter, self.room.topic.time_ms),
            ("news", "alice!u@h", 5000),
        )

    def test_lines_per_variant(self):
        """Each variant gets its tags; the bytes are made once and shared."""
        self.room.join(self.alice, 1)
        event = self.room.post(
            self.alice, "PRIVMSG", "hi you", 1500, client_tags={"+typing": "done"}
        ).event
        self.assertEqual(event.line(0), b":alice!u@h PRIVMSG #Lobby :hi you\r\n")
        self.assertEqual(
            event.line(SERVER_TIME),
            b"@time=1970-01-01T00:00:01.500Z :alice!u@h PRIVMSG #Lobby :hi you\r\n",
        )
        self.assertEqual(
            event.line(MESSAGE_TAGS),
            b"@msgid=lobby:8;+typing=done :alice!u@h PRIVMSG #Lobby :hi you\r\n",
        )
        self.assertIs(event.line(MESSAGE_TAGS), event.line(MESSAGE_TAGS))

    def test_extended_join_variant(self):
        """extended-join is a variant bit: the JOIN line gains account and
        real name, is made once per variant, and other events are alike."""
        self.alice.realname = "Alice A"
        event = self.room.join(self.alice, 1).event
        self.assertEqual(event.line(0), b":alice!u@h JOIN #Lobby\r\n")
        self.assertEqual(
            event.line(EXTENDED_JOIN), b":alice!u@h JOIN #Lobby * :Alice A\r\n"
        )
        self.assertIs(
            event.line(EXTENDED_JOIN | MESSAGE_TAGS),
            event.line(EXTENDED_JOIN | MESSAGE_TAGS),
        )
        post = self.room.post(self.alice, "PRIVMSG", "x", 2).event
        self.assertEqual(post.line(EXTENDED_JOIN), post.line(0))

    def test_quit_params(self):
        self.room.join(self.alice, 1)
        delivery = self.room.leave(self.alice, "QUIT", "gone", 2)
        self.assertEqual(delivery.event.params, ("gone",))
        self.assertIs(delivery.origin, self.alice)

    def test_event_is_frozen(self):
        """An event is wire data: it cannot be changed after it happened.
        Its fields are C{Final}, so the type checker refuses an assignment
        (and the class has no C{__dict__} for a new attribute)."""
        event = self.room.join(self.alice, 1).event
        self.assertRaises(AttributeError, setattr, event, "colour", "red")
        try:
            import mypy  # noqa: F401
        except ImportError:
            raise SkipTest("mypy is not installed: pip install '.[test]'")
        source = os.path.abspath(self.mktemp() + ".py")
        with open(source, "w") as f:
            f.write(
                "from chatroom.core.room import Event\n"
                "event = Event(room='r', seq=1, time_ms=0, command='PRIVMSG',"
                " source='a!b@c', params=('#r', 'hi'))\n"
                "event.params = ('#x',)\n"
            )
        result = subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--no-incremental", source],
            capture_output=True,
            text=True,
            env={**os.environ, "MYPYPATH": REPO},
            timeout=600,
        )
        out = result.stdout + result.stderr
        self.assertEqual(result.returncode, 1, out)
        self.assertIn('Cannot assign to final attribute "params"', out)

    def test_multicast_members_leave_the_audience(self):
        """A member on multicast delivery is still a member, but is not
        sent events over its connection, except its own leave."""
        self.room.join(self.alice, 1)
        self.room.join(self.bob, 2)
        self.room.set_multicast(self.bob, True)
        self.assertTrue(self.room.on_multicast(self.bob))
        self.assertEqual(self.room.members, (self.alice, self.bob))
        self.assertEqual(self.room.audience, (self.alice,))
        first = self.room.post(self.alice, "PRIVMSG", "a", 3)
        second = self.room.post(self.alice, "PRIVMSG", "b", 4)
        self.assertIs(first.audience, second.audience)
        part = self.room.leave(self.bob, "PART", None, 5)
        self.assertEqual(part.audience, (self.alice, self.bob))
        self.assertFalse(self.room.on_multicast(self.bob))
        self.room.join(self.bob, 6)
        self.assertEqual(self.room.audience, (self.alice, self.bob))
        self.room.set_multicast(self.bob, True)
        self.room.set_multicast(self.bob, False)
        self.assertEqual(self.room.audience, (self.alice, self.bob))

    def test_visible_to(self):
        """A public room is visible to all; a secret or private one only
        to its members."""
        from chatroom.core.room import RoomAccess

        self.room.join(self.alice, 1)
        self.assertTrue(self.room.visible_to(self.bob))
        self.room.modes.add("s")
        self.assertFalse(self.room.visible_to(self.bob))
        self.assertTrue(self.room.visible_to(self.alice))
        self.room.modes.discard("s")
        self.room.access = RoomAccess("pw")
        self.assertFalse(self.room.visible_to(self.bob))
