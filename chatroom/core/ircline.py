# -*- test-case-name: tests.test_ircline -*-
"""IRC lines: bounded framing, parsing and formatting with IRCv3 message tags.

Pure functions and value objects; nothing here touches the network.  The
limits follow RFC 1459 section 2.3 (512 bytes including CR LF for the IRC
part of a line) and the IRCv3 message-tags specification (4094 bytes of
client tag data, 4096 with the leading C{@} and the separating space).
"""

from __future__ import annotations

import datetime

import attrs

from chatroom.core.errors import ParseError

# RFC 1459 2.3: "IRC messages shall not exceed 512 characters in length,
# counting all characters including the trailing CR-LF".
MAX_IRC_BYTES = 512
# IRCv3 message-tags: clients may send up to 4094 bytes of tag data, which
# with '@' and the trailing space is 4096 bytes.
MAX_CLIENT_TAG_BYTES = 4096
# LIMITS.md: unterminated input is cut off at about 5.5 KiB.  That is more
# than the longest legal line (4096 + 512), so no legal client is cut off.
MAX_UNTERMINATED_BYTES = 5632


class LineTooLong(ParseError):
    """The IRC part or the tag part of a line is longer than allowed."""

    def __init__(self, message: str = "the line is too long") -> None:
        super().__init__(message, "too-long")


class InvalidUTF8(ParseError):
    """The line is not valid UTF-8."""

    def __init__(self, message: str = "the line is not UTF-8") -> None:
        super().__init__(message, "invalid-utf8")


class RecvQExceeded(ParseError):
    """Too many bytes arrived without a line terminator."""

    def __init__(self, message: str = "too much input without a line end") -> None:
        super().__init__(message, "recvq-exceeded")


@attrs.frozen
class Message:
    """One parsed IRC message.

    @ivar tags: IRCv3 message tags, values unescaped (a tag sent without a
        value has the value C{""}).
    @ivar prefix: the source, without the leading colon, or C{None}.
    @ivar command: the command, upper-cased (numerics stay as they are).
    @ivar params: the parameters; the trailing one without its colon.
    """

    command: str
    params: tuple[str, ...] = ()
    tags: dict[str, str] = attrs.field(factory=dict)
    prefix: str | None = None


class LineBuffer:
    """Split a byte stream into lines, never buffering without bound.

    CR, LF and CR LF all end a line (RFC 1459 permits either; a lone CR is
    treated as a terminator rather than smuggled into a message).  Empty
    lines are dropped, as RFC 1459 says servers should silently ignore them.
    Lines are returned as bytes; decoding happens per complete line, so a
    UTF-8 character split across two reads is reassembled first.
    """

    def __init__(self, max_unterminated: int = MAX_UNTERMINATED_BYTES) -> None:
        self._buffer = b""
        self._max_unterminated = max_unterminated

    def feed(self, data: bytes) -> list[bytes]:
        """Add C{data}; return the complete non-empty lines it finishes.

        @raise RecvQExceeded: when the unterminated remainder grows past the
            bound.  The buffer is emptied so the caller can drop the peer.
        """
        data = self._buffer + data
        if b"\r" in data:
            data = data.replace(b"\r", b"\n")
        *lines, rest = data.split(b"\n")
        if len(rest) > self._max_unterminated:
            self._buffer = b""
            raise RecvQExceeded(
                "more than %d bytes without a line end" % (self._max_unterminated,)
            )
        self._buffer = rest
        return [line for line in lines if line]

    def pending(self) -> int:
        """How many bytes are waiting for their line terminator."""
        return len(self._buffer)


def unescape_tag_value(value: str) -> str:
    """Undo IRCv3 tag value escaping.

    An unknown escape C{\\x} stands for C{x}; a lone trailing backslash is
    dropped, as the message-tags specification requires.
    """
    if "\\" not in value:
        return value
    out = []
    chars = iter(value)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        escaped = next(chars, None)
        if escaped is None:
            break
        out.append(_UNESCAPES.get(escaped, escaped))
    return "".join(out)


_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_ESCAPES = str.maketrans(
    {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"}
)


def escape_tag_value(value: str) -> str:
    """Escape a tag value for the wire."""
    return value.translate(_ESCAPES)


def parse_tags(raw: str) -> dict[str, str]:
    """Parse the tag section of a line (without the leading C{@})."""
    tags = {}
    for item in raw.split(";"):
        if not item:
            continue
        key, _, value = item.partition("=")
        if not key:
            raise ParseError("a message tag has no name")
        tags[key] = unescape_tag_value(value)
    return tags


def format_tags(tags: dict[str, str]) -> str:
    """Format tags as C{@a=b;c} (no trailing space); C{""} when empty."""
    if not tags:
        return ""
    return "@" + ";".join(
        key + "=" + escape_tag_value(value) if value else key
        for key, value in tags.items()
    )


def parse_line(
    line: bytes,
    max_irc_bytes: int = MAX_IRC_BYTES,
    max_tag_bytes: int = MAX_CLIENT_TAG_BYTES,
) -> Message:
    """Parse one line (without its terminator) into a L{Message}.

    @param max_irc_bytes: the longest IRC part allowed, counted with its
        CR LF.  A server parses what clients send with the default (RFC
        1459's 512); a client parses what servers relay, which carries the
        sender's source in front of a line of up to 512 bytes, and so
        passes a larger limit.
    @param max_tag_bytes: the longest tag part, with its C{@} and space.
    @raise LineTooLong: the tag part exceeds C{max_tag_bytes} or the
        IRC part (counted with its CR LF) exceeds C{max_irc_bytes}.
    @raise InvalidUTF8: the line is not UTF-8.
    @raise ParseError: there is no command, or the tags are malformed.
    """
    tags: dict[str, str] = {}
    rest = line
    raw_tags = None
    if line.startswith(b"@"):
        raw_tags, _, rest = line.partition(b" ")
        if len(raw_tags) + 1 > max_tag_bytes:
            raise LineTooLong("the message tags are too long")
    rest = rest.lstrip(b" ")
    if len(rest) + 2 > max_irc_bytes:
        raise LineTooLong("the line is too long")
    if b"\0" in line:
        raise ParseError("the line contains a NUL byte")
    try:
        text = rest.decode("utf-8")
        if raw_tags is not None:
            tags = parse_tags(raw_tags[1:].decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidUTF8("the line is not valid UTF-8") from None
    prefix = None
    if text.startswith(":"):
        prefix, _, text = text[1:].partition(" ")
        if not prefix:
            # ": CMD" would format back without a prefix.
            raise ParseError("the line has an empty prefix")
        text = text.lstrip(" ")
    head, has_trailing, trailing = text.partition(" :")
    # Only the space separates parameters (RFC 1459 2.3.1), not tabs & co.
    params = [param for param in head.split(" ") if param]
    if has_trailing:
        params.append(trailing)
    if not params or params[0].startswith(":"):
        raise ParseError("the line has no command")
    if params[0].startswith("@"):
        # " @x" (tags cannot follow spaces) would format back as tags.
        raise ParseError("the command starts with '@'")
    command = params.pop(0)
    return Message(
        command=command.upper(), params=tuple(params), tags=tags, prefix=prefix
    )


def format_line(
    command: str,
    *params: str,
    prefix: str | None = None,
    tags: dict[str, str] | None = None,
) -> bytes:
    """Format an IRC line, CR LF included.

    The last parameter is sent as a trailing parameter (with a colon) when
    it must be: empty, containing a space, or starting with a colon.
    """
    return format_text(command, *params, prefix=prefix, tags=tags).encode("utf-8")


def format_text(
    command: str,
    *params: str,
    prefix: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Like L{format_line}, returning text rather than bytes.

    The IRC part (tags left out) never exceeds L{MAX_IRC_BYTES} with its
    CR LF: a longer last parameter (a topic, a message, a real name that
    users wrote) is cut at a UTF-8 character boundary, so that no line a
    host formats is longer than the C{LINELEN} it advertises.
    """
    parts = []
    if prefix:
        parts.append(":" + prefix)
    parts.append(command)
    if params:
        parts.extend(params[:-1])
        last = params[-1]
        if not last or " " in last or last.startswith(":"):
            last = ":" + last
        parts.append(last)
    text = " ".join(parts)
    size = len(text.encode("utf-8")) + 2
    if size > MAX_IRC_BYTES and params:
        over = size - MAX_IRC_BYTES
        raw = parts[-1].encode("utf-8")
        keep = max(1, len(raw) - over)
        parts[-1] = raw[:keep].decode("utf-8", "ignore")
        text = " ".join(parts)
    if tags:
        text = format_tags(tags) + " " + text
    return text + "\r\n"


def server_time(time_ms: int) -> str:
    """Format milliseconds since the epoch as an IRCv3 C{server-time} value."""
    stamp = datetime.datetime.fromtimestamp(time_ms / 1000, datetime.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (time_ms % 1000,)


def parse_server_time(value: str) -> int:
    """Parse an IRCv3 timestamp (C{2026-11-24T12:00:00.000Z}) to milliseconds.

    @raise ParseError: when C{value} is not such a timestamp.
    """
    try:
        if not value.endswith("Z"):
            raise ValueError(value)
        stamp = datetime.datetime.fromisoformat(value[:-1])
        if stamp.tzinfo is not None:
            # Both an offset and Z: ambiguous, refused.
            raise ValueError(value)
        stamp = stamp.replace(tzinfo=datetime.UTC)
    except ValueError:
        raise ParseError("not an IRCv3 timestamp: %r" % (value,)) from None
    return round(stamp.timestamp() * 1000)


def add_tags(line: bytes, tags: dict[str, str]) -> bytes:
    """Put C{tags} in front of the tags an already formatted C{line} has."""
    extra = format_tags(tags).encode("utf-8")
    if line.startswith(b"@"):
        return extra + b";" + line[1:]
    return extra + b" " + line
