# -*- test-case-name: tests.test_client_split -*-
"""Splitting a long message into lines the host relays whole.

A host relays C{PRIVMSG #room :text} to every member with the sender's
source in front (C{:nick!~user@host PRIVMSG #room :text}), and the whole
relayed line, CR LF included, must fit the host's C{LINELEN} (ISUPPORT;
RFC 1459's 512 bytes when not advertised).  So the room for text is
C{LINELEN} minus that prefix minus 2.  A longer message is sent as several
messages, cut where irssi (C{split_line}) and WeeChat
(C{split_msg_max_length}) cut: at the last space that fits, or, in a word
longer than a line, at the last whole UTF-8 character that fits.  Nothing
typed is dropped except the one space at each cut.

Pure functions; no network, no clock.
"""

from __future__ import annotations

#: RFC 1459 2.3: 512 bytes per line, CR LF included, when the host does not
#: advertise C{LINELEN}.
DEFAULT_LINELEN = 512

#: Bytes the CTCP wrapping of C{/me} adds: C{\\x01ACTION } and C{\\x01}.
ACTION_OVERHEAD = len("\x01ACTION \x01")

#: The host part of a source the client has not seen yet: HOSTLEN, 63
#: bytes (RFC 1035 names; what servers allow), so the estimate is never short.
HOSTLEN = 63

#: The longest user name a host keeps: C{~} and 10 characters.
USERLEN = 11

#: The smallest budget L{split_text} accepts; a host whose prefix leaves
#: less than this for text is not one a chat can be held on.
MIN_BUDGET = 16


def text_budget(linelen: int, source: str, channel: str) -> int:
    """Bytes of text one relayed C{PRIVMSG} may carry.

    @param linelen: the host's C{LINELEN} in bytes, CR LF included.
    @param source: C{nick!user@host} as the host relays it.
    @param channel: C{#room}.
    """
    prefix = ":%s PRIVMSG %s :" % (source, channel)
    return linelen - len(prefix.encode("utf-8")) - 2


def estimated_source(nick: str) -> str:
    """The longest source the host could give C{nick}, when the client has
    not yet seen its own (from the echo of its JOIN)."""
    return "%s!%s@%s" % (nick, "u" * USERLEN, "h" * HOSTLEN)


def split_text(text: str, budget: int) -> list[str]:
    """Cut C{text} into pieces of at most C{budget} UTF-8 bytes each.

    Each cut is at the last space that fits (the space itself is dropped);
    a word longer than C{budget} is cut at a UTF-8 character boundary.

    @return: the pieces in order; C{[text]} when it fits; at least one.
    @raise ValueError: C{budget} is less than L{MIN_BUDGET}.
    """
    if budget < MIN_BUDGET:
        raise ValueError("a line leaves only %d bytes for text" % (budget,))
    data = text.encode("utf-8")
    pieces: list[str] = []
    while len(data) > budget:
        cut = budget
        # Never inside a character: step back over continuation bytes.
        while cut > 0 and (data[cut] & 0xC0) == 0x80:
            cut -= 1
        space = data.rfind(b" ", 0, cut + 1)
        if space > 0:
            pieces.append(data[:space].decode("utf-8"))
            data = data[space + 1 :]
        else:
            pieces.append(data[:cut].decode("utf-8"))
            data = data[cut:]
    if data or not pieces:
        pieces.append(data.decode("utf-8"))
    return pieces
