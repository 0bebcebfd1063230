# -*- test-case-name: tests.test_ircserver.ChatHistoryTests -*-
"""CHATHISTORY requests: which stored events answer them.

IRCv3 C{draft/chathistory}: C{LATEST}, C{BEFORE}, C{AFTER}, C{AROUND} and
C{BETWEEN}, with C{msgid=ROOM:SEQ} or C{timestamp=...} references (both
ends exclusive).  The connection parses the command and sends the batch;
this module turns a request into a range of sequence numbers and asks the
history store for it.  Nothing here touches the network.
"""

from __future__ import annotations

from typing import Any

import attrs

from chatroom.core.ircline import ParseError, parse_server_time
from chatroom.core.names import parse_msgid
from chatroom.core.room import Event, Room

#: The largest sequence number a reference may name (SQLite INTEGER).
MAX_SEQ = 2**63 - 2

#: The subcommands that return events.
SUBCOMMANDS = ("LATEST", "BEFORE", "AFTER", "AROUND", "BETWEEN")


class HistoryRequestError(Exception):
    """A request answered with C{FAIL CHATHISTORY CODE PARAMS...}."""

    def __init__(self, code: str, *params: str) -> None:
        super().__init__(code, *params)
        self.code = code
        self.params = params


@attrs.frozen
class HistoryRequest:
    """A parsed C{CHATHISTORY SUBCOMMAND #room REF [REF] LIMIT}."""

    subcommand: str
    channel: str
    refs: tuple[str, ...]
    limit: int


def parse_request(params: tuple[str, ...], max_limit: int) -> HistoryRequest:
    """Check a request's parameters; the limit is capped at C{max_limit}.

    @raise HistoryRequestError: an unknown subcommand, missing parameters
        or a limit that is not a number.
    """
    sub = params[0].upper() if params else ""
    if sub not in SUBCOMMANDS:
        raise HistoryRequestError("INVALID_PARAMS", sub or "*", "Unknown subcommand")
    if len(params) < (5 if sub == "BETWEEN" else 4):
        raise HistoryRequestError("INVALID_PARAMS", sub, "Not enough parameters")
    text = params[-1]
    if not (text.isascii() and text.isdigit()):
        raise HistoryRequestError(
            "INVALID_PARAMS", sub, text, "The limit must be a whole number"
        )
    # A huge limit is capped below, never an error.
    limit = int(text[:12])
    return HistoryRequest(
        sub, params[1], tuple(params[2:-1]), max(0, min(limit, max_limit))
    )


def _position(store: Any, room: Room, text: str, after: bool) -> int:
    """A sequence position from C{msgid=...} or C{timestamp=...}.

    For a range starting after the reference, events with a sequence number
    above the result are in range; otherwise those below it.
    """
    kind, _, value = text.partition("=")
    if kind == "msgid":
        parsed = parse_msgid(value)
        if parsed is None or parsed[0] != room.key:
            raise HistoryRequestError(
                "INVALID_MSGREFTYPE", "*", text, "Unknown message id"
            )
        if parsed[1] > MAX_SEQ:
            # Would not fit SQLite's 64-bit integers: no such event.
            raise HistoryRequestError("INVALID_PARAMS", "*", text, "No such message id")
        return parsed[1]
    if kind == "timestamp":
        try:
            time_ms = parse_server_time(value)
        except ParseError:
            raise HistoryRequestError(
                "INVALID_PARAMS", "*", text, "Bad timestamp"
            ) from None
        return store.seq_at(room.key, time_ms, after)
    raise HistoryRequestError(
        "INVALID_MSGREFTYPE", "*", text, "Use msgid= or timestamp="
    )


def select_events(
    store: Any, room: Room, request: HistoryRequest, messages_only: bool
) -> list[Event]:
    """The stored events that answer C{request}, oldest first.

    @param messages_only: only C{PRIVMSG} and C{NOTICE} (clients without
        C{draft/event-playback}).
    @raise HistoryRequestError: for a reference that is not usable.
    """
    limit = request.limit
    refs = request.refs
    end = room.next_seq

    def between(after: int, before: int, count: int, newest: bool) -> list[Event]:
        return store.between(room.key, after, before, count, newest, messages_only)

    if limit == 0:
        return []
    sub = request.subcommand
    if sub == "LATEST":
        after = 0 if refs[0] == "*" else _position(store, room, refs[0], True)
        return between(after, end, limit, True)
    if sub == "BEFORE":
        return between(0, _position(store, room, refs[0], False), limit, True)
    if sub == "AFTER":
        return between(_position(store, room, refs[0], True), end, limit, False)
    if sub == "AROUND":
        middle = _position(store, room, refs[0], False)
        # Half the limit before the referenced event; the event itself and
        # what follows it after, so that a limit of 1 is the event alone.
        older = between(0, middle, limit // 2, True) if limit > 1 else []
        return older + between(middle - 1, end, limit - len(older), False)
    first = _position(store, room, refs[0], True)
    second = _position(store, room, refs[1], False)
    if first <= second:
        return between(first, second, limit, False)
    # The reference given first is the later one: the limit counts back
    # from it.
    return between(
        _position(store, room, refs[1], True),
        _position(store, room, refs[0], False),
        limit,
        True,
    )
