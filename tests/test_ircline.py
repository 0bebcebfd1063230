"""Tests for chatroom.core.ircline: framing, parsing, formatting."""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatroom.core.ircline import (
    MAX_UNTERMINATED_BYTES,
    InvalidUTF8,
    LineBuffer,
    LineTooLong,
    Message,
    ParseError,
    RecvQExceeded,
    add_tags,
    escape_tag_value,
    format_line,
    parse_line,
    parse_server_time,
    server_time,
    unescape_tag_value,
)


class LineBufferTests(SynchronousTestCase):
    """Byte streams become bounded lines."""

    def test_crlf_lf_and_lone_cr_end_lines(self):
        """CR LF, LF and a lone CR all end a line; empty lines are dropped."""
        buffer = LineBuffer()
        self.assertEqual(buffer.feed(b"a\r\nb\nc\rd"), [b"a", b"b", b"c"])
        self.assertEqual(buffer.feed(b"\r\n\r\n"), [b"d"])
        self.assertEqual(buffer.pending(), 0)

    def test_split_across_reads(self):
        """A line (and a UTF-8 character) split across reads is joined."""
        buffer = LineBuffer()
        data = "PRIVMSG #a :caf\u00e9\r\n".encode("utf-8")
        cut = data.index(b"\xa9")  # in the middle of the two-byte character
        self.assertEqual(buffer.feed(data[:cut]), [])
        self.assertEqual(buffer.feed(data[cut:]), [data[:-2]])

    def test_unterminated_flood_is_cut(self):
        """More than the bound without a line end raises, and empties."""
        buffer = LineBuffer()
        buffer.feed(b"x" * MAX_UNTERMINATED_BYTES)
        self.assertRaises(RecvQExceeded, buffer.feed, b"x")
        self.assertEqual(buffer.pending(), 0)

    def test_long_terminated_line_is_returned(self):
        """A terminated line is returned even when long; parsing refuses it."""
        buffer = LineBuffer()
        lines = buffer.feed(b"x" * 600 + b"\nPING a\n")
        self.assertEqual(lines, [b"x" * 600, b"PING a"])


class ParseTests(SynchronousTestCase):
    """parse_line turns lines into Messages or raises ParseError."""

    def test_plain(self):
        self.assertEqual(
            parse_line(b"privmsg #a :hello there"),
            Message("PRIVMSG", ("#a", "hello there")),
        )

    def test_prefix_and_middle_params(self):
        self.assertEqual(
            parse_line(b":n!u@h USER a 0 * :Real Name"),
            Message("USER", ("a", "0", "*", "Real Name"), prefix="n!u@h"),
        )

    def test_empty_trailing(self):
        self.assertEqual(parse_line(b"TOPIC #a :"), Message("TOPIC", ("#a", "")))

    def test_tags(self):
        """Tags are split and unescaped; a tag without value is empty."""
        message = parse_line(b"@label=x\\s1;+typing;+a=b\\:c PRIVMSG #a :hi")
        self.assertEqual(message.tags, {"label": "x 1", "+typing": "", "+a": "b;c"})
        self.assertEqual(message.command, "PRIVMSG")

    def test_odd_escapes(self):
        """Unknown escapes stand for the character; a trailing \\ is dropped."""
        self.assertEqual(unescape_tag_value("a\\b\\"), "ab")
        self.assertEqual(parse_line(b"@k=\\q\\ TAGMSG #a").tags, {"k": "q"})

    def test_too_long(self):
        """512 bytes with CR LF is the limit for the IRC part."""
        parse_line(b"PRIVMSG #a :" + b"x" * (510 - 12))
        self.assertRaises(LineTooLong, parse_line, b"PRIVMSG #a :" + b"x" * (511 - 12))

    def test_limit_is_an_argument(self):
        """A client parses relayed lines, longer by the source prefix, with
        a larger limit of its own; the default stays the server's 512."""
        line = b":alice!~alice@192.0.2.1 PRIVMSG #a :" + b"x" * 505
        self.assertRaises(LineTooLong, parse_line, line)
        self.assertEqual(parse_line(line, max_irc_bytes=1024).params[1], "x" * 505)
        self.assertRaises(LineTooLong, parse_line, line, max_irc_bytes=512)

    def test_tags_too_long(self):
        self.assertRaises(
            LineTooLong, parse_line, b"@+a=" + b"x" * 4095 + b" PRIVMSG #a :hi"
        )

    def test_invalid_utf8(self):
        self.assertRaises(InvalidUTF8, parse_line, b"PRIVMSG #a :\xff\xfe")

    def test_no_command(self):
        for line in (b":prefix", b":prefix  ", b" ", b"@a=b", b":x :y"):
            self.assertRaises(ParseError, parse_line, line)

    def test_nul_refused(self):
        self.assertRaises(ParseError, parse_line, b"PRIVMSG #a :a\0b")

    @given(st.binary(max_size=700))
    def test_arbitrary_bytes(self, data):
        """Arbitrary bytes give a Message or a ParseError, nothing else."""
        try:
            message = parse_line(data)
        except ParseError:
            return
        self.assertIsInstance(message, Message)


_param = st.text(
    st.characters(blacklist_characters="\r\n\0 ", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=20,
).filter(lambda p: not p.startswith(":"))
_trailing = st.text(
    st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)),
    max_size=60,
)
_tag_value = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=20
)


class FormatTests(SynchronousTestCase):
    """format_line produces what parse_line reads back."""

    def test_trailing_colon_when_needed(self):
        self.assertEqual(
            format_line("PRIVMSG", "#a", "hi there"), b"PRIVMSG #a :hi there\r\n"
        )
        self.assertEqual(format_line("JOIN", "#a"), b"JOIN #a\r\n")
        self.assertEqual(format_line("TOPIC", "#a", ""), b"TOPIC #a :\r\n")
        self.assertEqual(format_line("PRIVMSG", "#a", ":)"), b"PRIVMSG #a ::)\r\n")

    def test_tags_escaped(self):
        self.assertEqual(
            format_line("TAGMSG", "#a", tags={"+x": "a b;c\\"}),
            b"@+x=a\\sb\\:c\\\\ TAGMSG #a\r\n",
        )

    def test_add_tags(self):
        self.assertEqual(
            add_tags(b"PING x\r\n", {"label": "1"}), b"@label=1 PING x\r\n"
        )
        self.assertEqual(
            add_tags(b"@a=b PING x\r\n", {"label": "1"}), b"@label=1;a=b PING x\r\n"
        )

    @given(
        st.lists(_param, max_size=5),
        _trailing,
        st.dictionaries(
            st.from_regex(r"\+?[a-z][a-z0-9/.-]{0,10}", fullmatch=True),
            _tag_value,
            max_size=3,
        ),
    )
    def test_round_trip(self, middle, trailing, tags):
        """Whatever is formatted parses back to the same message."""
        line = format_line("PRIVMSG", *middle, trailing, tags=tags)
        self.assertEqual(
            parse_line(line[:-2]), Message("PRIVMSG", (*middle, trailing), tags=tags)
        )

    def test_never_longer_than_512(self):
        """The last parameter is cut at a character boundary so that the
        IRC part, CR LF included, is 512 bytes at most; tags do not count."""
        line = format_line(
            "PRIVMSG", "#a", "é" * 300, prefix="n!u@h", tags={"msgid": "x" * 100}
        )
        irc_part = line.split(b" ", 1)[1]
        self.assertEqual(len(irc_part), 512)
        self.assertEqual(parse_line(line[:-2]).params[1], "é" * 246)
        odd = format_line("PRIVMSG", "#a", "é" * 300, prefix="nn!u@h")
        self.assertEqual(len(odd), 511)  # half a character is not sent
        odd.decode("utf-8")
        exact = format_line("PRIVMSG", "#a", "x" * 499)
        self.assertEqual(exact, b"PRIVMSG #a " + b"x" * 499 + b"\r\n")
        self.assertEqual(format_line("PRIVMSG", "#a", "x" * 500), exact)

    @given(_tag_value)
    def test_escape_round_trip(self, value):
        self.assertEqual(unescape_tag_value(escape_tag_value(value)), value)


class ServerTimeTests(SynchronousTestCase):
    """IRCv3 timestamps."""

    def test_round_trip(self):
        self.assertEqual(server_time(1764000000123), "2025-11-24T16:00:00.123Z")
        self.assertEqual(parse_server_time("2025-11-24T16:00:00.123Z"), 1764000000123)

    def test_bad(self):
        for value in (
            "yesterday",
            "2025-11-24T16:00:00",
            "",
            "2025-11-24T16:00:00.000+01:00Z",
        ):
            self.assertRaises(ParseError, parse_server_time, value)
