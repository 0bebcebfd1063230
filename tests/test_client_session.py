"""The client session against the real host in memory (iosim, one task.Clock).

The middle layer of the client's tests: the real L{RoomSession} and
L{RoomClientProtocol} talk to the real L{IRCFactory} and L{RoomHost} through
C{twisted.test.iosim}, so every reconnect scenario runs in microseconds and
on a fake clock, with links that drop, go silent or refuse.
"""

from twisted.trial.unittest import SynchronousTestCase

from chatroom.client import errors
from chatroom.client.reconnect import ReconnectState, RoomTarget
from chatroom.client.ui import ChatController
from chatroom.host import Limits

from .memory_network import MemoryNetwork, new_session

Q = b"\x07" * 32
TARGET = RoomTarget(Q, "lobby", ("127.0.0.1:6697",), 1)


class SessionTestsMixin:
    def setUp(self):
        self.net = MemoryNetwork(limits=Limits(flood_rate=0))

    def session(self, nick="alice", connect=True, **kwargs):
        session, seen = new_session(self.net, TARGET, nick, **kwargs)
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
        shown_first = []
        d = alice.say("hello")
        d.addCallback(lambda e: (shown_first.append(alice_seen.messages()), e)[1])
        self.net.settle()
        # The message is shown before say() fires.
        self.assertEqual(shown_first, [[("alice", "hello")]])
        event = self.successResultOf(d)
        self.assertEqual((event.text, event.own), ("hello", True))
        self.assertEqual(bob_seen.messages(), [("alice", "hello")])
        self.assertEqual(alice_seen.messages(), [("alice", "hello")])

    def test_read_only_reads_without_joining(self):
        """C{chatroom tail}: a public room's history is read without a
        JOIN, so its members see nobody come and go."""
        alice, alice_seen = self.session("alice")
        self.successResultOf(self.say(alice, "hello"))
        reader, reader_seen = self.session("reader", read_only=True)
        self.assertEqual(reader_seen.messages(), [("alice", "hello")])
        room = self.net.host.find_room("#lobby")
        self.assertEqual(sorted(m.nick for m in room.members), ["alice"])
        self.close(reader)
        kinds = [event.kind for event in alice_seen.events]
        self.assertNotIn("join", kinds[1:])
        self.assertNotIn("quit", kinds)

    def test_read_only_joins_a_closed_room(self):
        """A secret room (+s) tells non-members nothing: the reader joins
        to read it."""
        alice, _ = self.session("alice")
        self.successResultOf(self.say(alice, "hello"))
        self.net.host.find_room("#lobby").modes.add("s")
        reader, reader_seen = self.session("reader", read_only=True)
        self.assertEqual(reader_seen.messages(), [("alice", "hello")])
        room = self.net.host.find_room("#lobby")
        self.assertIn("reader", [m.nick for m in room.members])

    def test_closed_room_reader_hides_its_own_join(self):
        """C{chatroom tail} on a closed room joins it to read it, but does
        not show its own JOIN as the room's latest event; everyone else's
        comings and goings are shown."""
        alice, _ = self.session("alice")
        self.successResultOf(self.say(alice, "hello"))
        self.net.host.find_room("#lobby").modes.add("s")
        reader, reader_seen = self.session(
            "reader", read_only=True, hide_own_membership=True
        )
        shown = [(event.kind, event.sender) for event in reader_seen.events]
        self.assertEqual(shown, [("join", "alice"), ("message", "alice")])
        self.close(reader)
        self.assertEqual(len(reader_seen.events), 2)

    def test_hidden_own_join_leaves_as_many_events_as_asked(self):
        """Hiding its own JOIN does not make the reader show one event
        fewer than it was asked for."""
        alice, _ = self.session("alice")
        self.successResultOf(self.say(alice, "one"))
        self.successResultOf(self.say(alice, "two"))
        self.net.host.find_room("#lobby").modes.add("s")
        reader, reader_seen = self.session(
            "reader", read_only=True, hide_own_membership=True, recent=2
        )
        self.assertEqual(reader_seen.messages(), [("alice", "one"), ("alice", "two")])

    def test_hidden_own_join_is_only_this_sessions(self):
        """An earlier session's JOIN under the same nick is history like
        any other; only the reader's own JOIN is left out."""
        self.net.host.find_room("#lobby").modes.add("s")
        earlier, _ = self.session("reader")
        self.close(earlier)
        reader, reader_seen = self.session(
            "reader", read_only=True, hide_own_membership=True
        )
        shown = [(event.kind, event.sender) for event in reader_seen.events]
        self.assertEqual(shown, [("join", "reader"), ("quit", "reader")])
        self.assertEqual(reader_seen.events[0].seq, 1)

    def test_read_only_says_nothing_of_a_taken_nick(self):
        """A one-shot read that came in as C{reader_} does not promise the
        nick back later: it is gone before that could happen."""
        self.session("reader")
        other, other_seen = self.session("reader", read_only=True)
        self.assertEqual(other.nick, "reader_")
        self.assertEqual([s for s in other_seen.status if "until it is free" in s], [])
        self.assertIsNone(other._regain_call)

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
        self.assertTrue(
            any("1 missed message fetched" in s for s in alice_seen.status),
            alice_seen.status,
        )


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
        for call in (
            session.names,
            session.topic,
            lambda: session.topic("new"),
            lambda: session.change_nick("bob"),
        ):
            self.failureResultOf(call(), errors.NotConnected)

    def test_still_trying_is_said_once_a_minute(self):
        """While the host stays away, the first failed attempt is reported,
        then one line a minute for the same reason, not one per attempt."""
        from chatroom.client.session import RETRY_NOTE_INTERVAL

        session, seen = self.session("alice")
        attempts = []
        start_attempt = session.start_attempt
        session.start_attempt = lambda n, target: (
            attempts.append(n),
            start_attempt(n, target),
        )
        self.net.refuse()
        self.net.links[0].drop()
        self.net.settle()

        def trying():
            return [s for s in seen.status if s.startswith("Could not reconnect")]

        self.net.advance(RETRY_NOTE_INTERVAL - 1)
        self.assertGreater(len(attempts), 3)  # several attempts failed
        self.assertEqual(len(trying()), 1, seen.status)
        self.net.advance(RETRY_NOTE_INTERVAL)
        self.assertEqual(len(trying()), 2, seen.status)

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
        self.assertTrue(
            any("alice_" in s and "taken" in s for s in seen.status), seen.status
        )
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
        session, _ = self.session("alice", connect=False, alternative_nicks=False)
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
        self.assertTrue(
            any("You are alice again" in s for s in seen.status), seen.status
        )
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
        self.assertTrue(
            any("Lost the connection" in s and "PING" in s for s in alice_seen.status),
            alice_seen.status,
        )
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
        self.assertEqual(
            alice_seen.messages(), [("bob", "one"), ("bob", "two"), ("bob", "three")]
        )

    def test_busy_link_is_not_probed(self):
        alice, _ = self.session("alice")
        bob, _ = self.session("bob")
        for n in range(10):
            self.net.advance(20)
            self.successResultOf(self.say(bob, "n%d" % n))
        self.assertEqual(alice.protocol.keepalive.probes, 0)


class PendingTests(SessionTestsMixin, SynchronousTestCase):
    """Issue 12 item 4: what is typed while reconnecting is kept, sent in
    order once back, never twice, and the user hears when it was not sent."""

    def away(self, session):
        self.net.refuse()
        self.net.links[0].drop()
        self.net.settle()
        self.assertEqual(session.machine.state, ReconnectState.WAITING)

    def back(self):
        self.net.refuse(False)
        self.net.advance(2)

    def test_sent_in_order_once_back(self):
        alice, alice_seen = self.session("alice")
        bob, bob_seen = self.session("bob")
        self.away(alice)
        first = self.say(alice, "typed while away")
        second = alice.action("waves")
        self.net.settle()
        self.assertNoResult(first)
        self.assertEqual(alice.pending, ["typed while away", "waves"])
        self.assertEqual(
            [s for s in alice_seen.status if s.startswith("Pending")],
            [
                "Pending until #lobby is back: typed while away",
                "Pending until #lobby is back: waves",
            ],
        )
        self.back()
        self.assertTrue(alice.joined)
        self.assertEqual(self.successResultOf(first).text, "typed while away")
        self.assertEqual(self.successResultOf(second).kind, "action")
        self.assertEqual(alice.pending, [])
        self.assertEqual(
            bob_seen.messages(), [("alice", "typed while away"), ("alice", "waves")]
        )
        self.assertEqual(alice_seen.messages(), bob_seen.messages())

    def cut_after_host_read(self, link):
        """The host reads what the client wrote, then the link dies before
        anything comes back (the echo is lost)."""
        pump = link.pump
        pump.serverIO.bufferReceived(pump.clientIO.getOutBuffer())
        link.silence()
        self.net.settle()
        pump.serverIO.loseConnection()
        pump.clientIO.loseConnection()
        self.net.settle()

    def test_not_sent_twice_when_the_echo_was_lost(self):
        alice, alice_seen = self.session("alice")
        bob, bob_seen = self.session("bob")
        d = alice.say("did it arrive?")
        self.cut_after_host_read(self.net.links[0])
        self.assertFalse(alice.joined)
        self.assertEqual(bob_seen.messages(), [("alice", "did it arrive?")])
        self.assertNoResult(d)
        self.net.advance(2)
        self.assertTrue(alice.joined)
        event = self.successResultOf(d)
        self.assertEqual((event.text, event.replayed), ("did it arrive?", True))
        self.assertEqual(bob_seen.messages(), [("alice", "did it arrive?")])
        self.assertEqual(alice_seen.messages(), [("alice", "did it arrive?")])

    def test_sent_again_when_it_never_arrived(self):
        alice, alice_seen = self.session("alice")
        bob, bob_seen = self.session("bob")
        self.net.links[0].silence()
        d = self.say(alice, "lost on the way")
        self.net.advance(61)  # probe, timeout, then the 1 s backoff
        self.assertTrue(alice.joined)
        self.assertEqual(self.successResultOf(d).text, "lost on the way")
        # The host still holds the ghost called alice.
        self.assertEqual(bob_seen.messages(), [("alice_", "lost on the way")])
        self.assertEqual(alice_seen.messages(), bob_seen.messages())

    def test_queue_is_bounded_and_says_so(self):
        from chatroom.client.session import MAX_PENDING

        alice, alice_seen = self.session("alice")
        self.away(alice)
        kept = [alice.say("m%d" % n) for n in range(MAX_PENDING)]
        refused = alice.say("one too many")
        failure = self.failureResultOf(refused, errors.NotSent)
        self.assertIn("one too many", str(failure.value))
        self.assertIn(str(failure.value), alice_seen.status)
        self.assertEqual(len(alice.pending), MAX_PENDING)
        self.back()
        self.assertEqual(
            [self.successResultOf(d).text for d in kept],
            ["m%d" % n for n in range(MAX_PENDING)],
        )

    def test_queue_bytes_bounded(self):
        from chatroom.client.session import MAX_PENDING_BYTES

        alice, _ = self.session("alice")
        self.away(alice)
        big = " ".join(["word"] * 2000)  # about 10 KB, split into lines
        kept = [alice.say(big) for _ in range(MAX_PENDING_BYTES // len(big))]
        self.failureResultOf(alice.say(big), errors.NotSent)
        self.back()
        for d in kept:
            self.successResultOf(d)

    def test_closing_with_pending_tells_the_user(self):
        alice, alice_seen = self.session("alice")
        self.away(alice)
        d = alice.say("never sent")
        closed = alice.close()
        self.net.settle()
        self.successResultOf(closed)
        failure = self.failureResultOf(d, errors.NotSent)
        self.assertIn("never sent", str(failure.value))
        self.assertIn(str(failure.value), alice_seen.status)

    def test_before_first_join_refused(self):
        session, _ = self.session("alice", connect=False)
        self.failureResultOf(session.say("early"), errors.NotConnected)


class SplitTests(SessionTestsMixin, SynchronousTestCase):
    """Issue 12 item 5: a message longer than a line is split, nothing lost."""

    def test_long_message_arrives_whole_in_pieces(self):
        alice, _ = self.session("alice")
        bob, bob_seen = self.session("bob")
        words = ["w%03d" % n for n in range(300)]  # 1499 bytes
        event = self.successResultOf(self.say(alice, " ".join(words)))
        texts = [text for sender, text in bob_seen.messages()]
        self.assertEqual(len(texts), 4)
        self.assertEqual(" ".join(texts), " ".join(words))
        self.assertEqual(event.text, texts[-1])
        source = alice.protocol.source
        for text in texts[:-1]:
            relayed = ":%s PRIVMSG #lobby :%s\r\n" % (source, text)
            self.assertGreater(len(relayed.encode()), 512 - 5)
            self.assertLessEqual(len(relayed.encode()), 512)

    def test_long_word_of_multibyte_characters(self):
        alice, _ = self.session("alice")
        bob, bob_seen = self.session("bob")
        text = "ü" * 700
        self.successResultOf(self.say(alice, text))
        self.assertEqual("".join(t for _, t in bob_seen.messages()), text)

    def test_lines_are_messages(self):
        alice, _ = self.session("alice")
        bob, bob_seen = self.session("bob")
        self.successResultOf(self.say(alice, "one\r\ntwo\nthree"))
        self.assertEqual(
            bob_seen.messages(),
            [("alice", "one"), ("alice", "two"), ("alice", "three")],
        )


class PrivateRoomSessionTests(SessionTestsMixin, SynchronousTestCase):
    """A private room: the password gets the session in; a refusal says
    what would."""

    def setUp(self):
        super().setUp()
        from chatroom.core.room import RoomAccess

        self.net.host.rooms["lobby"].access = RoomAccess("sesame")

    def refusal(self, **kwargs):
        session, _ = self.session("eve", connect=False, **kwargs)
        d = session.connect()
        self.net.settle()
        return str(self.failureResultOf(d, errors.RoomRefused).value)

    def test_no_password(self):
        text = self.refusal()
        self.assertIn("it is private", text)
        self.assertIn("--password", text)
        self.assertNotIn("check the room name", text)

    def test_wrong_password(self):
        self.assertIn("password is wrong", self.refusal(password="guess"))

    def test_right_password(self):
        alice, seen = self.session("alice", password="sesame")
        self.say(alice, "inside")
        self.assertEqual(seen.messages(), [("alice", "inside")])


class OwnMembershipShownTests(SessionTestsMixin, SynchronousTestCase):
    """Which of a session's own comings and goings its user is shown."""

    def deliver(self, session, line):
        from chatroom.core.ircline import parse_line

        session._deliver(parse_line(line.encode("utf-8")))

    def test_takeover_join_is_not_news(self):
        """The JOIN a host replays when it hands a session a connection of
        its own back (no number: the room saw nothing) is not shown."""
        alice, seen = self.session("alice")
        before = list(seen.events)
        self.deliver(alice, ":alice!~alice@127.0.0.1 JOIN #lobby")
        self.assertEqual(seen.events, before)
        self.deliver(alice, "@msgid=lobby:90 :bob!~bob@127.0.0.1 JOIN #lobby")
        self.assertEqual(
            [(e.kind, e.sender) for e in seen.events[len(before) :]], [("join", "bob")]
        )

    def test_tail_hides_its_own_earlier_connection_leaving(self):
        """For tail (hide_own_membership), the QUIT a restarted host
        recorded for the session's previous connection is its own going,
        not the room's news; a QUIT under its nick before its first JOIN
        (someone else's earlier visit) is shown."""
        tail, seen = self.session("tailer", hide_own_membership=True)
        first = min(tail._own_joins)
        before = len(seen.events)
        self.deliver(
            tail,
            "@batch=b;msgid=lobby:%d :tailer!~t@h QUIT :Quit: Host restarted"
            % (first + 5,),
        )
        self.assertEqual(len(seen.events), before)
        tail.last_seq = None  # older history, as a fresh fetch would give
        self.deliver(
            tail,
            "@batch=b;msgid=lobby:%d :tailer!~t@h QUIT :Quit: earlier" % (first - 1,),
        )
        self.assertEqual([e.text for e in seen.events[before:]], ["Quit: earlier"])


class ReasonTextTests(SynchronousTestCase):
    """Status lines say what happened to the connection in plain words."""

    def test_twisted_errors_in_plain_words(self):
        from twisted.internet import error

        from chatroom.client.session import _reason_text

        self.assertEqual(
            [
                _reason_text(e)
                for e in (
                    error.ConnectionDone(),
                    error.ConnectionLost(),
                    error.TCPTimedOutError(),
                    error.ConnectionRefusedError(),
                )
            ],
            [
                "the host closed the connection",
                "the connection broke",
                "the connection timed out",
                "connection refused",
            ],
        )
        self.assertEqual(
            _reason_text(OSError(113, "No route to host")), "No route to host"
        )
