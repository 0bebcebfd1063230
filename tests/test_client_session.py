"""The client session against the real host in memory (iosim, one task.Clock).

The middle layer of the client's tests: the real L{RoomSession} and
L{RoomClientProtocol} talk to the real L{IRCFactory} and L{RoomHost} through
C{twisted.test.iosim}, so every reconnect scenario runs in microseconds and
on a fake clock, with links that drop, go silent or refuse.
"""

from twisted.trial.unittest import SynchronousTestCase

from chatroom.client import errors
from chatroom.client.reconnect import ReconnectState, RoomTarget
from chatroom.client.session import RoomSession
from chatroom.client.ui import ChatController
from chatroom.host import Limits

from .memory_network import MemoryNetwork

Q = b"\x07" * 32
TARGET = RoomTarget(Q, "lobby", ("127.0.0.1:6697",), 1)


class Seen:
    """What one session showed its user."""

    def __init__(self):
        self.events = []
        self.status = []

    def on_event(self, event):
        self.events.append(event)

    def on_status(self, text):
        self.status.append(text)

    def messages(self):
        return [(e.sender, e.text) for e in self.events
                if e.kind in ("message", "action")]


class SessionTestsMixin:
    def setUp(self):
        self.net = MemoryNetwork(limits=Limits(flood_rate=0))

    def session(self, nick="alice", connect=True, **kwargs):
        seen = Seen()
        session = RoomSession(self.net.clock, TARGET, nick,
                              on_event=seen.on_event, on_status=seen.on_status,
                              policy=lambda attempt: 1.0,
                              endpoint_for=self.net.endpoint_for, **kwargs)
        if connect:
            d = session.connect()
            self.net.settle()
            self.assertIs(self.successResultOf(d), session)
        self.addCleanup(self.close, session)
        return session, seen

    def close(self, session):
        d = session.close()
        self.net.settle()
        self.successResultOf(d)

    def say(self, session, text):
        d = session.say(text)
        self.net.settle()
        return d


class SessionTests(SessionTestsMixin, SynchronousTestCase):
    def test_join_and_talk(self):
        alice, alice_seen = self.session("alice")
        bob, bob_seen = self.session("bob")
        event = self.successResultOf(self.say(alice, "hello"))
        self.assertEqual((event.text, event.own), ("hello", True))
        self.assertEqual(bob_seen.messages(), [("alice", "hello")])
        self.assertEqual(alice_seen.messages(), [("alice", "hello")])

    def test_names_and_topic(self):
        alice, _ = self.session("alice")
        self.session("bob")
        names = alice.names()
        self.net.settle()
        self.assertEqual(sorted(self.successResultOf(names)), ["alice", "bob"])
        topic = alice.topic("plans")
        self.net.settle()
        self.assertEqual(self.successResultOf(topic), "plans")

    def test_reconnect_after_drop_catches_up(self):
        alice, alice_seen = self.session("alice")
        bob, bob_seen = self.session("bob")
        self.net.links[0].drop()
        self.net.settle()
        self.assertEqual(alice.machine.state, ReconnectState.WAITING)
        self.successResultOf(self.say(bob, "while you were away"))
        self.net.advance(2)
        self.assertTrue(alice.joined)
        self.assertEqual(alice_seen.messages(), [("bob", "while you were away")])
        self.assertTrue(any("1 missed message fetched" in s
                            for s in alice_seen.status), alice_seen.status)


class CommandsWhileReconnectingTests(SessionTestsMixin, SynchronousTestCase):
    """Issue 9 item 7: commands typed while reconnecting fail their
    Deferred; they do not raise at the caller."""

    def reconnecting(self):
        session, seen = self.session("alice")
        self.net.refuse()
        self.net.links[0].drop()
        self.net.settle()
        self.assertEqual(session.machine.state, ReconnectState.WAITING)
        return session

    def test_names_topic_nick_fail_their_deferred(self):
        session = self.reconnecting()
        for call in (session.names, session.topic,
                     lambda: session.topic("new"),
                     lambda: session.change_nick("bob")):
            self.failureResultOf(call(), errors.NotConnected)

    def test_chat_screen_keeps_going(self):
        """Typed on the chat screen, they become a line on it."""
        session = self.reconnecting()
        lines = []
        controller = ChatController(session, lines.append, lambda: None)
        for typed in ("/names", "/topic", "/nick bob"):
            controller.line_entered(typed)
        self.assertEqual(len(lines), 3, lines)
        for line in lines:
            self.assertIn("Not in #lobby right now", line)


class NickInUseTests(SessionTestsMixin, SynchronousTestCase):
    """Issue 12 item 1: two of your own clients on the default nick."""

    def test_second_client_takes_nick_underscore(self):
        alice, _ = self.session("alice")
        second, seen = self.session("alice")
        self.assertEqual(second.nick, "alice_")
        self.assertTrue(any("alice_" in s and "taken" in s for s in seen.status),
                        seen.status)
        event = self.successResultOf(self.say(second, "hi"))
        self.assertEqual((event.sender, event.own), ("alice_", True))

    def test_every_alternative_taken_fails(self):
        from chatroom.client.errors import nick_alternatives
        for nick in ["alice"] + nick_alternatives("alice"):
            self.session(nick)
        session, _ = self.session("alice", connect=False)
        d = session.connect()
        self.net.settle()
        self.failureResultOf(d, errors.NickInUse)

    def test_without_alternatives_fails_at_once(self):
        self.session("alice")
        session, _ = self.session("alice", connect=False,
                                  alternative_nicks=False)
        d = session.connect()
        self.net.settle()
        self.failureResultOf(d, errors.NickInUse)

    def test_regains_the_nick_when_its_holder_leaves(self):
        first, _ = self.session("alice")
        second, seen = self.session("alice")
        closed = first.close()
        self.net.settle()
        self.successResultOf(closed)
        self.assertEqual(second.nick, "alice")
        self.assertTrue(any("You are alice again" in s for s in seen.status),
                        seen.status)
        event = self.successResultOf(self.say(second, "back"))
        self.assertEqual(event.sender, "alice")

    def test_regains_the_nick_later_when_holder_not_in_the_room(self):
        """The holder is on the host but not in the room: no QUIT is seen,
        so the session asks again every REGAIN_INTERVAL seconds."""
        from chatroom.client.session import REGAIN_INTERVAL
        holder, _ = self.session("alice")
        second, _ = self.session("alice")
        holder.protocol.send("PART", "#lobby")
        self.net.settle()
        self.assertEqual(second.nick, "alice_")
        closed = holder.close()  # its QUIT is not seen in the room any more
        self.net.settle()
        self.successResultOf(closed)
        self.assertEqual(second.nick, "alice_")
        self.net.advance(REGAIN_INTERVAL)
        self.assertEqual(second.nick, "alice")


class DeadLinkTests(SessionTestsMixin, SynchronousTestCase):
    """Issue 12 item 2: a link that goes silent is noticed, and the session
    reconnects and catches up as after any drop."""

    def test_silent_link_noticed_within_probe_and_timeout(self):
        alice, alice_seen = self.session("alice")
        bob, bob_seen = self.session("bob")
        self.net.links[0].silence()
        self.successResultOf(self.say(bob, "one"))
        self.net.advance(59)
        self.assertTrue(alice.joined)
        self.net.advance(1)
        self.assertFalse(alice.joined)
        self.assertTrue(any("Lost the connection" in s and "PING" in s
                            for s in alice_seen.status), alice_seen.status)
        self.successResultOf(self.say(bob, "two"))
        self.net.advance(1)  # the backoff policy's 1 s
        self.assertTrue(alice.joined)
        # The host still holds the silent connection (a ghost), so alice
        # came back as alice_ until the host's own timeout frees the nick.
        self.assertEqual(alice.nick, "alice_")
        self.assertEqual(alice_seen.messages(), [("bob", "one"), ("bob", "two")])
        self.net.advance(150)
        self.assertEqual(alice.nick, "alice")
        self.successResultOf(self.say(bob, "three"))
        self.assertEqual(alice_seen.messages(), [("bob", "one"), ("bob", "two"),
                                                 ("bob", "three")])

    def test_busy_link_is_not_probed(self):
        alice, _ = self.session("alice")
        bob, _ = self.session("bob")
        for n in range(10):
            self.net.advance(20)
            self.successResultOf(self.say(bob, "n%d" % n))
        self.assertEqual(alice.protocol.keepalive.probes, 0)
