"""The chat screen with an in-memory terminal: typing, incoming lines, commands."""

import datetime

from twisted.conch.insults import insults
from twisted.conch.insults.helper import TerminalBuffer
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from chatroom.client import errors
from chatroom.client.session import RoomEvent
from chatroom.client.ui import ChatController, ChatTerminal, format_event

UTC = datetime.timezone.utc
NOON = 1795003200000  # 2026-11-18T12:00:00Z


class FakeSession:
    """Records calls; answers like a joined session."""

    channel = "#lobby"

    def __init__(self):
        self.calls = []
        self.joined = True

    def _call(self, *call):
        self.calls.append(call)
        if not self.joined:
            return defer.fail(
                errors.NotConnected(
                    "Not in #lobby right now (waiting); wait for the reconnection."
                )
            )
        return defer.succeed(None)

    def say(self, text):
        return self._call("say", text)

    def action(self, text):
        return self._call("action", text)

    def change_nick(self, nick):
        return self._call("nick", nick)

    def names(self):
        self.calls.append(("names",))
        return defer.succeed(["bob", "@alice", "carol"])

    def topic(self, text=None):
        self.calls.append(("topic", text))
        return defer.succeed("" if text is None else text)


class ScreenLoop:
    """Feeds what the server side writes into a terminal emulator."""

    def __init__(self, emulator):
        self.client = insults.ClientProtocol(lambda: emulator)
        self.client.makeConnection(self)
        self.emulator = emulator

    def write(self, data):
        self.client.dataReceived(data)

    def writeSequence(self, data):
        self.write(b"".join(data))

    def loseConnection(self):
        pass


class ChatScreenTests(SynchronousTestCase):
    def setUp(self):
        self.session = FakeSession()
        self.quits = []
        self.terminal = ChatTerminal(on_quit=lambda: self.quits.append(True))
        self.controller = ChatController(
            self.session,
            self.terminal_show,
            self.quits.append,
            list_rooms=lambda: ["lobby  abcdef0123456789  127.0.0.1:6697"],
            tz=UTC,
        )
        self.terminal.controller = self.controller
        self.terminal.prompt = "[#lobby alice] "
        self.screen = TerminalBuffer()
        server = insults.ServerProtocol(lambda: self.terminal)
        server.makeConnection(ScreenLoop(self.screen))
        self.server = server

    def terminal_show(self, text):
        self.terminal.show(text)

    def type(self, text):
        self.server.dataReceived(text.encode("utf-8"))

    def lines(self):
        return [
            line.rstrip()
            for line in bytes(self.screen).decode("utf-8", "replace").splitlines()
            if line.strip()
        ]

    def incoming(self, text, sender="bob", seq=7, kind="message"):
        self.controller.event_received(
            RoomEvent(kind=kind, sender=sender, text=text, seq=seq, time_ms=NOON)
        )

    def test_typing_survives_incoming_message(self):
        self.type("hello wor")
        self.incoming("hi alice")
        self.assertEqual(
            self.lines(), ["12:00:00 <bob> hi alice", "[#lobby alice] hello wor"]
        )
        # The cursor is still at the end of what was typed: typing goes on.
        self.type("ld")
        self.assertEqual(self.lines()[-1], "[#lobby alice] hello world")

    def test_cursor_kept_in_the_middle(self):
        self.type("helo")
        self.server.dataReceived(b"\x1b[D")  # left arrow
        self.incoming("interruption")
        self.type("l")
        self.assertEqual(self.lines()[-1], "[#lobby alice] hello")

    def test_enter_sends_and_clears(self):
        self.type("hello everyone\r")
        self.assertEqual(self.session.calls, [("say", "hello everyone")])
        self.assertEqual(self.lines(), ["[#lobby alice]"])

    def test_utf8_typed(self):
        self.type("café\r")
        self.assertEqual(self.session.calls, [("say", "café")])

    def test_backspace_over_utf8(self):
        self.type("caf\u00e9\x7fe\r")
        self.assertEqual(self.session.calls, [("say", "cafe")])

    def test_wide_characters_move_the_cursor_by_columns(self):
        """A CJK character takes two columns: arrows, backspace and redraws
        move the cursor by two, and the line stays right."""
        moves = []
        terminal = self.terminal.terminal
        original = terminal.cursorBackward
        self.patch(
            terminal, "cursorBackward", lambda n=1: (moves.append(n), original(n))
        )
        self.type("a日b")
        self.server.dataReceived(b"\x1b[D\x1b[D")  # left, left: before the CJK
        self.assertEqual(moves, [1, 2])
        self.incoming("interruption")
        self.assertEqual(moves[-1], 3)  # the redraw puts it back: b (1) + CJK (2)
        self.server.dataReceived(b"\x1b[C")  # right, over the CJK character
        self.server.dataReceived(b"\x7f")  # backspace deletes it
        self.assertEqual(moves[-1], 2)
        self.type("\r")
        self.assertEqual(self.session.calls, [("say", "ab")])

    def test_commands(self):
        self.type("/me waves\r")
        self.type("/nick alicia\r")
        self.type("/topic roof work on saturday\r")
        self.type("//etc/passwd is a path\r")
        self.assertEqual(
            self.session.calls,
            [
                ("action", "waves"),
                ("nick", "alicia"),
                ("topic", "roof work on saturday"),
                ("say", "/etc/passwd is a path"),
            ],
        )

    def test_names_sorted(self):
        self.type("/names\r")
        self.assertIn("-!- In #lobby: @alice bob carol", self.lines())

    def test_topic_shown(self):
        self.type("/topic\r")
        self.assertIn("-!- #lobby has no topic.", self.lines())

    def test_rooms_and_help(self):
        self.type("/rooms\r")
        self.assertIn("-!- lobby  abcdef0123456789  127.0.0.1:6697", self.lines())
        self.type("/help\r")
        self.assertIn("Commands:", self.lines())

    def test_unknown_command(self):
        self.type("/frobnicate\r")
        self.assertIn(
            "-!- Unknown command /frobnicate; /help lists them.", self.lines()
        )
        self.assertEqual(self.session.calls, [])

    def test_refused_while_reconnecting_is_one_line(self):
        self.session.joined = False
        self.type("anyone?\r")
        self.assertIn(
            "-!- Not in #lobby right now (waiting); wait for the reconnection.",
            self.lines(),
        )

    def test_quit_command(self):
        """/quit leaves with the reason given, or "Leaving"."""
        self.type("/quit\r")
        self.type("/quit gone fishing\r")
        self.assertEqual(self.quits, ["Leaving", "gone fishing"])

    def test_ctrl_c_quits(self):
        self.type("half a line")
        self.server.dataReceived(b"\x03")
        self.assertEqual(self.quits, [True])

    def test_ctrl_d_only_on_empty_line(self):
        self.type("text")
        self.server.dataReceived(b"\x04")
        self.assertEqual(self.quits, [])
        self.type("\r")
        self.server.dataReceived(b"\x04")
        self.assertEqual(self.quits, [True])

    def test_history_with_up_arrow(self):
        self.type("first\r")
        self.server.dataReceived(b"\x1b[A")
        self.type("\r")
        self.assertEqual(self.session.calls, [("say", "first"), ("say", "first")])

    def test_order_and_control_characters(self):
        self.incoming("one", seq=1)
        self.incoming("two\x07\x1b[2J", seq=2)
        self.controller.status("Reconnected to #lobby: 0 missed messages fetched.")
        self.assertEqual(
            self.lines(),
            [
                "12:00:00 <bob> one",
                "12:00:00 <bob> two[2J",
                "-!- Reconnected to #lobby: 0 missed messages fetched.",
                "[#lobby alice]",
            ],
        )


class FormatTests(SynchronousTestCase):
    def event(self, kind, text="", sender="bob"):
        return RoomEvent(kind=kind, sender=sender, text=text, time_ms=NOON)

    def test_kinds(self):
        self.assertEqual(
            format_event(self.event("action", "waves"), UTC), "12:00:00 * bob waves"
        )
        self.assertEqual(
            format_event(self.event("notice", "psst"), UTC), "12:00:00 -bob- psst"
        )
        self.assertEqual(
            format_event(self.event("join"), UTC), "12:00:00 -!- bob joined"
        )
        self.assertEqual(
            format_event(self.event("quit", "Ping timeout"), UTC),
            "12:00:00 -!- bob quit (Ping timeout)",
        )
        self.assertEqual(
            format_event(self.event("topic", "roofs"), UTC),
            "12:00:00 -!- bob set the topic: roofs",
        )
        self.assertEqual(
            format_event(self.event("nick", "robert"), UTC),
            "12:00:00 -!- bob is now robert",
        )
