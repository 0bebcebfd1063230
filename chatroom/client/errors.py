"""Errors the chatroom client shows people: one sentence each, with what to do next."""

from __future__ import annotations

from typing import Sequence

from chatroom.errors import ChatroomError


class ClientError(ChatroomError):
    """Base of the errors the console client prints as one line."""


class BadRoomSpec(ClientError):
    """What the user typed is neither C{ROOM} nor C{FINGERPRINT/ROOM}."""


class NoSuchRoom(ClientError):
    """No host answered for the room, and the directory does not hold it."""

    def __init__(self, spec: str) -> None:
        super().__init__(
            "No room %s answered on this network; check the name with"
            " 'chatroom rooms', or check --discovery-interface; to open a"
            " new room on a host that lets users open rooms, name the host"
            " with --connect ADDRESS:PORT --key FINGERPRINT." % (spec,)
        )
        self.spec = spec


class AmbiguousRoom(ClientError):
    """Several hosts serve a room of that name; the user has to pick one.

    @ivar choices: the C{FINGERPRINT/ROOM} forms of the candidates.
    """

    def __init__(self, room: str, choices: Sequence[str]) -> None:
        listed = ", ".join(choices)
        super().__init__(
            "%d hosts serve a room called %s: %s; run the command again with"
            " one of them." % (len(choices), room, listed)
        )
        self.room = room
        self.choices = tuple(choices)


class HostUnreachable(ClientError):
    """No address of the room's host accepted a connection."""

    def __init__(self, room: str, addresses: Sequence[str], why: str) -> None:
        super().__init__(
            "Could not reach the host of %s at %s (%s); it may have moved or"
            " stopped: try 'chatroom find %s' again in a moment."
            % (room, ", ".join(addresses) or "no address", why, room.lstrip("#"))
        )
        self.room = room
        self.addresses = tuple(addresses)
        self.why = why


class KeyMismatch(ClientError):
    """The server at the room's address has another key than the room's.

    C{expected} and C{seen} are short key fingerprints (or, for a C{--key}
    given by hand, what the user typed).

    No IRC byte was sent to it: the key is checked inside the TLS handshake.
    """

    def __init__(
        self, room: str, address: str, expected: str, seen: str | None
    ) -> None:
        super().__init__(
            "The server at %s is not the host of %s: its key fingerprint is"
            " %s, the room's is %s; nothing was sent to it. Find the room"
            " again with 'chatroom find', or check the --key you gave."
            % (address, room, seen or "(not an Ed25519 key)", expected)
        )
        self.address = address
        self.expected = expected
        self.seen = seen


class KeyPinMismatch(KeyMismatch):
    """The server at C{--connect} does not have the key C{--key} names."""

    def __init__(self, room: str, address: str, given: str, seen: str | None) -> None:
        ClientError.__init__(
            self,
            "The server at %s is not the host --key %s names: its key"
            " fingerprint is %s; nothing was sent to it. Compare --key with"
            " what the host prints at start ('chatroom host key fingerprint"
            " ...') or 'chatroom find %s' prints."
            % (address, given, seen or "(not an Ed25519 key)", room.lstrip("#")),
        )
        self.address = address
        self.expected = given
        self.seen = seen


class NickInUse(ClientError):
    """The host refused the nickname: someone in the room already has it.

    @ivar suggestion: a nickname to try instead.
    """

    def __init__(self, nick: str, suggestion: str) -> None:
        super().__init__(
            "The nick %s is taken on this host; try --nick %s." % (nick, suggestion)
        )
        self.nick = nick
        self.suggestion = suggestion


class RoomRefused(ClientError):
    """The host refused to let us join (unknown room, banned, password)."""


class HistoryRefused(ClientError):
    """The host refused a C{CHATHISTORY} request (C{FAIL CHATHISTORY ...}),
    for example to a non-member of a closed room."""


class NotConnected(ClientError):
    """The client is not in the room right now (reconnecting or closed)."""


class NotSent(ClientError):
    """A message was not sent: the pending queue was full, the session
    closed before it could be sent, or the host refused it."""


#: The longest nick the client makes up (the host's C{NICKLEN}).
NICKLEN = 30


def nick_alternatives(nick: str, nicklen: int = NICKLEN) -> list[str]:
    """The nicks to try, in order, when C{nick} is taken (433):
    C{nick_}, C{nick__}, then C{nick1} to C{nick9}, as irssi (appending
    C{_}) and WeeChat (a list, then digits) do; LIMITS.md "Client".  Each is
    cut to C{nicklen} characters."""
    suffixes = ["_", "__"] + [str(n) for n in range(1, 10)]
    return [nick[: nicklen - len(suffix)] + suffix for suffix in suffixes]


def alternative_nick(nick: str) -> str:
    """A nickname to offer when C{nick} is taken: C{alice} -> C{alice_}."""
    if len(nick) < 30:
        return nick + "_"
    return nick[:29] + "_"
