"""Fuzzing every text parser with properties that can fail.

- IRC lines: arbitrary bytes raise only L{ParseError}; whatever parses
  formats back to a line that parses to the same message; whatever the
  formatter is given (within what a message can hold) parses back.
- CHATHISTORY requests and mode changes: arbitrary parameters raise only
  the parser's own errors, and what parses obeys the parser's contract;
  sent through a real connection they never cause an internal error.
- Room specs (the client's C{find}/C{join} argument): arbitrary text
  raises only L{BadRoomSpec}; every spec the client prints parses back.

The discovery codecs are fuzzed in C{tests.test_discovery_codec}.
"""

import string

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatroom.chathistory import SUBCOMMANDS, HistoryRequestError, parse_request
from chatroom.client.errors import BadRoomSpec
from chatroom.client.session import parse_room_spec, room_spec
from chatroom.core.errors import ParseError
from chatroom.core.ircline import (
    MAX_IRC_BYTES,
    LineBuffer,
    Message,
    format_line,
    parse_line,
)
from chatroom.core.names import short_fingerprint, valid_room_name
from chatroom.core.room import (
    KNOWN_MODES,
    MAX_MODE_CHANGES,
    MissingModeParameter,
    UnknownMode,
    parse_mode_changes,
)

from .fakes import FakeClient, make_host

# Pieces that make random lines likely to parse, mixed with raw bytes.
_piece = st.sampled_from(
    [
        b"@",
        b":",
        b" ",
        b"  ",
        b";",
        b"=",
        b"\\",
        b"a",
        b"B",
        b"PRIVMSG",
        b"#lobby",
        b"+draft/x",
        b"\xc3\xa9",
        b"\xff",
        b"\t",
        b"\x00",
        b"\r",
        b"\n",
        b"label=1",
        b"nick!u@h",
    ]
)
_lines = st.one_of(st.binary(max_size=600), st.lists(_piece, max_size=40).map(b"".join))


def _reparse(message: Message) -> Message:
    """Format C{message} and parse the result (without its CR LF)."""
    line = format_line(
        message.command, *message.params, prefix=message.prefix, tags=message.tags
    )
    assert line.endswith(b"\r\n")
    return parse_line(line[:-2])


class IRCLineFuzzTests(SynchronousTestCase):
    """parse_line and format_line."""

    @settings(max_examples=1500, deadline=None)
    @given(_lines)
    @example(b": PRIVMSG #lobby hi")
    @example(b"@a=\\ PRIVMSG x")
    @example(b" @")
    def test_arbitrary_bytes(self, data):
        """Every line the framing yields either raises ParseError or parses
        to a message whose formatted form parses to the same message."""
        buffer = LineBuffer()
        for line in buffer.feed(data + b"\r\n"):
            try:
                message = parse_line(line)
            except ParseError:
                continue
            self.assertEqual(_reparse(message), message, line)

    _token = st.text(
        string.ascii_letters + string.digits + "-_./#*!@[]^{}|~",
        min_size=1,
        max_size=12,
    )
    _middle = _token.filter(lambda p: not p.startswith(":"))
    _trailing = st.text(
        st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)),
        max_size=60,
    )
    _tag_key = st.from_regex(r"\+?[a-z][a-z0-9-]{0,8}(/[a-z]{1,5})?", fullmatch=True)

    @settings(max_examples=1000, deadline=None)
    @given(
        st.from_regex(r"[A-Za-z]{1,10}|[0-9]{3}", fullmatch=True),
        st.lists(_middle, max_size=6),
        st.none() | _trailing,
        st.none() | _token.filter(lambda p: not p.startswith(":")),
        st.dictionaries(_tag_key, _trailing, max_size=3),
    )
    def test_format_then_parse(self, command, middles, trailing, prefix, tags):
        """What the formatter is given comes back from the parser."""
        params = tuple(middles) + (() if trailing is None else (trailing,))
        message = Message(command=command, params=params, tags=tags, prefix=prefix)
        line = format_line(command, *params, prefix=prefix, tags=tags)
        if len(line.partition(b" ")[2] if tags else line) > MAX_IRC_BYTES:
            return  # the parser rightly refuses it as too long
        parsed = parse_line(line[:-2])
        self.assertEqual(parsed, attrs_evolve(message, command=command.upper()))


def attrs_evolve(message, **changes):
    import attrs

    return attrs.evolve(message, **changes)


_params = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "LATEST",
                "latest",
                "BEFORE",
                "AFTER",
                "AROUND",
                "BETWEEN",
                "TARGETS",
                "#lobby",
                "*",
                "msgid=lobby:3",
                "timestamp=x",
                "timestamp=2026-11-24T12:00:00.000Z",
                "0",
                "-1",
                "100",
                "99999999999999999999",
                " 5",
                "\u0665",
                "1_0",
                "",
            ]
        ),
        st.text(max_size=20),
    ),
    max_size=7,
).map(tuple)


class ChatHistoryFuzzTests(SynchronousTestCase):
    """parse_request, and CHATHISTORY sent through a connection."""

    @settings(max_examples=2000, deadline=None)
    @given(_params, st.integers(min_value=0, max_value=1000))
    def test_parse_request(self, params, max_limit):
        try:
            request = parse_request(params, max_limit)
        except HistoryRequestError as e:
            self.assertTrue(e.code.isupper())
            self.assertTrue(all(isinstance(p, str) for p in e.params))
            return
        self.assertIn(request.subcommand, SUBCOMMANDS)
        self.assertTrue(0 <= request.limit <= max_limit)
        self.assertEqual(request.channel, params[1])
        self.assertEqual(request.refs, params[2:-1])
        self.assertGreaterEqual(
            len(request.refs), 2 if request.subcommand == "BETWEEN" else 1
        )

    @settings(max_examples=150, deadline=None)
    @given(_params)
    def test_through_connection(self, params):
        """Any CHATHISTORY a client sends gets an answer, never an internal
        error (trial also fails the test on any logged traceback)."""
        host = make_host()
        client = FakeClient(host).register(
            "alice", ("batch", "message-tags", "draft/chathistory")
        )
        client.join()
        client.send("PRIVMSG #lobby :one")
        client.raw()
        client.protocol.dataReceived(
            format_line("CHATHISTORY", *params) if params else b"CHATHISTORY\r\n"
        )
        host.clock.advance(0)
        self.assertNotIn("internal-errors", host.counters)
        self.assertTrue(client.protocol.transport.connected)


_mode_letters = st.text(
    alphabet=st.sampled_from(sorted(KNOWN_MODES) + ["+", "-", "x", "O", "\u00e9", " "]),
    max_size=12,
)


class ModeFuzzTests(SynchronousTestCase):
    """parse_mode_changes, and MODE sent through a connection."""

    @settings(max_examples=2000, deadline=None)
    @given(
        _mode_letters | st.text(max_size=12),
        st.lists(st.text(max_size=8), max_size=5).map(tuple),
    )
    def test_parse(self, modes, params):
        try:
            changes = parse_mode_changes(modes, params)
        except (UnknownMode, MissingModeParameter):
            return
        letters = [c for c in modes if c not in "+-"]
        kept = [change.mode for change in changes]
        # The changes keep the letters' order; only changes with a parameter
        # past MAX_MODE_CHANGES are left out.
        rest = iter(letters)
        self.assertTrue(all(letter in rest for letter in kept), (kept, letters))
        used = [change.param for change in changes if change.param is not None]
        self.assertLessEqual(len(used), MAX_MODE_CHANGES)
        if len(used) < MAX_MODE_CHANGES:
            self.assertEqual(kept, letters)
            self.assertEqual(tuple(used), params[: len(used)])
        for change in changes:
            self.assertIn(change.mode, KNOWN_MODES)
            if change.mode in "ov" or (change.mode in "kl" and change.adding):
                self.assertIsNotNone(change.param)
            elif change.mode != "b":
                self.assertIsNone(change.param)

    @settings(max_examples=150, deadline=None)
    @given(
        _mode_letters,
        st.lists(
            st.sampled_from(["alice", "bob", "secret", "", "#lobby", "x y"]), max_size=4
        ),
    )
    def test_through_connection(self, modes, params):
        host = make_host()
        client = FakeClient(host).register("alice")
        client.join()
        client.raw()
        line = format_line("MODE", "#lobby", *(([modes] if modes else []) + params))
        client.protocol.dataReceived(line)
        host.clock.advance(0)
        self.assertNotIn("internal-errors", host.counters)
        self.assertTrue(client.protocol.transport.connected)


class RoomSpecFuzzTests(SynchronousTestCase):
    """The client's ROOM / FINGERPRINT/ROOM argument."""

    @settings(max_examples=1000, deadline=None)
    @given(
        st.text(max_size=80)
        | st.from_regex(r"#?([0-9a-fA-F:]{0,20}/)?#?[a-z.\-_#]{0,10}", fullmatch=True)
    )
    def test_arbitrary_text(self, text):
        try:
            room, prefix = parse_room_spec(text)
        except BadRoomSpec as e:
            self.assertIn(repr(text), str(e))
            return
        self.assertIsInstance(prefix, bytes)
        self.assertLessEqual(len(prefix), 32)
        self.assertTrue(room)
        self.assertNotIn("/", room)

    @settings(max_examples=500, deadline=None)
    @given(
        st.text(max_size=80)
        | st.from_regex(r"#?([0-9a-fA-F:]{0,20}/)?#?[a-z.\-_#]{0,10}", fullmatch=True)
    )
    def test_parsed_rooms_are_openable(self, text):
        """A spec that parses names a room a host could open, and means
        the same when written back in the form the client prints."""
        try:
            room, prefix = parse_room_spec(text)
        except BadRoomSpec:
            return
        self.assertTrue(valid_room_name(room, 64), room)
        if prefix:
            self.assertEqual(
                parse_room_spec("%s/%s" % (prefix.hex(), room)), (room, prefix)
            )
        else:
            self.assertEqual(parse_room_spec(room), (room, b""))

    @settings(max_examples=500, deadline=None)
    @given(
        st.binary(min_size=32, max_size=32),
        st.from_regex(r"[A-Za-z0-9._\-]{1,32}", fullmatch=True),
    )
    def test_printed_specs_parse(self, q, room):
        """Every spec the client prints (room_spec) parses to its room and
        the key's short fingerprint."""
        spec = room_spec(q, room)
        self.assertEqual(
            parse_room_spec(spec), (room, bytes.fromhex(short_fingerprint(q)))
        )
        self.assertEqual(parse_room_spec("#" + room), (room, b""))
