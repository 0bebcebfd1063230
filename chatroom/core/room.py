# -*- test-case-name: tests.test_room -*-
"""The sequencer: a room's members and the totally ordered events they see.

A L{Room} assigns every event (message, notice, join, part, quit, topic) the
room's next sequence number and records who must receive it.  It does no
I/O and reads no clock: the caller passes the time in.  Membership changes
replace the room's audience tuple, so an event only holds a reference to the
audience current when it happened; nothing per member is done per event.
"""

from __future__ import annotations

from typing import Any

import attrs

from chatroom.core.ircline import format_line, server_time

#: Bit of L{IRoomMember.variant}: the member negotiated C{message-tags}.
MESSAGE_TAGS = 1
#: Bit of L{IRoomMember.variant}: the member negotiated C{server-time}.
SERVER_TIME = 2
#: All variants, for formatting caches.
VARIANTS = 4

#: Commands whose copy goes back to the sender only with C{echo-message}.
POST_COMMANDS = frozenset({"PRIVMSG", "NOTICE", "TAGMSG"})


def casefold(name: str) -> str:
    """Fold a nick or room name as the advertised C{CASEMAPPING=ascii} does."""
    return name.lower() if name.isascii() else _ascii_lower(name)


def _ascii_lower(name: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in name)


def make_msgid(room_key: str, seq: int) -> str:
    """The IRCv3 C{msgid} of event C{seq} in the room C{room_key}."""
    return "%s:%d" % (room_key, seq)


def parse_msgid(msgid: str) -> tuple[str, int] | None:
    """Split a C{msgid} into room key and sequence number, or C{None}."""
    room, sep, seq = msgid.rpartition(":")
    if not sep or not seq.isdigit() or not seq.isascii():
        return None
    return room, int(seq)


@attrs.define(eq=False)
class Event:
    """One event of a room, or an unsequenced line to several members.

    @ivar room: the room key (folded name) or C{None} for lines that belong
        to no single room (a nick change).
    @ivar seq: the room's sequence number; C{None} for lines that are
        delivered but neither numbered nor stored (C{NICK}, C{TAGMSG}).
    @ivar time_ms: when the host accepted it, in milliseconds since the epoch.
    @ivar command: the IRC command (C{PRIVMSG}, C{JOIN}, ...).
    @ivar source: the C{nick!user@host} of whoever caused it.
    @ivar params: the IRC parameters, the channel first where there is one.
    @ivar client_tags: client-only tags (C{+typing} ...) to relay.
    @ivar audience: the members to deliver it to (not stored).
    @ivar origin: the member who caused it, if connected (not stored).
    @ivar label: the C{labeled-response} label of the command that caused it.
    """

    room: str | None
    seq: int | None
    time_ms: int
    command: str
    source: str
    params: tuple[str, ...]
    client_tags: dict[str, str] = attrs.field(factory=dict)
    audience: tuple[Any, ...] = ()
    origin: Any = None
    label: str | None = None
    _lines: list[bytes | None] = attrs.field(
        factory=lambda: [None] * VARIANTS, repr=False)

    @property
    def msgid(self) -> str | None:
        """The IRCv3 C{msgid} tag value, carrying the sequence number."""
        if self.seq is None or self.room is None:
            return None
        return make_msgid(self.room, self.seq)

    def tags_for(self, variant: int) -> dict[str, str]:
        """The tags a member of C{variant} is sent with this event."""
        tags: dict[str, str] = {}
        if variant & SERVER_TIME:
            tags["time"] = server_time(self.time_ms)
        if variant & MESSAGE_TAGS:
            msgid = self.msgid
            if msgid is not None:
                tags["msgid"] = msgid
            tags.update(self.client_tags)
        return tags

    def line(self, variant: int) -> bytes:
        """The event as a line for members of C{variant}, formatted once."""
        cached = self._lines[variant]
        if cached is None:
            if self.command == "TAGMSG" and not variant & MESSAGE_TAGS:
                # A TAGMSG is nothing but tags: members without
                # message-tags are not sent it at all.
                self._lines[variant] = b""
                return b""
            cached = self._lines[variant] = format_line(
                self.command, *self.params, prefix=self.source,
                tags=self.tags_for(variant))
        return cached


@attrs.define
class Topic:
    """A room's topic, who set it and when."""

    text: str = ""
    setter: str = ""
    time_ms: int = 0


class NotAMember(Exception):
    """The member is not in the room."""


class Room:
    """A chat room: its members, its topic and its sequence counter.

    @ivar key: the folded room name (the channel is C{#} plus the name).
    @ivar channel: the channel name as the host spells it, C{#} included.
    @ivar next_seq: the sequence number the next event gets.
    """

    def __init__(self, name: str, next_seq: int = 1,
                 topic: Topic | None = None) -> None:
        self.key = casefold(name)
        self.channel = "#" + name
        self.next_seq = next_seq
        self.topic = topic if topic is not None else Topic()
        self._members: dict[Any, None] = {}
        self.audience: tuple[Any, ...] = ()

    def __repr__(self) -> str:
        return "<Room %s next_seq=%d members=%d>" % (
            self.channel, self.next_seq, len(self._members))

    def __contains__(self, member: Any) -> bool:
        return member in self._members

    def __len__(self) -> int:
        return len(self._members)

    @property
    def members(self) -> tuple[Any, ...]:
        """The members, in the order they joined."""
        return self.audience

    def _event(self, command: str, member: Any, params: tuple[str, ...],
               now_ms: int, client_tags: dict[str, str] | None = None,
               label: str | None = None) -> Event:
        seq = self.next_seq
        self.next_seq = seq + 1
        return Event(room=self.key, seq=seq, time_ms=now_ms, command=command,
                     source=member.source, params=params,
                     client_tags=client_tags or {}, audience=self.audience,
                     origin=member, label=label)

    def join(self, member: Any, now_ms: int, label: str | None = None) -> Event:
        """Add C{member}; the join event goes to everyone, the joiner too."""
        self._members[member] = None
        self.audience = tuple(self._members)
        return self._event("JOIN", member, (self.channel,), now_ms, label=label)

    def leave(self, member: Any, command: str, reason: str | None,
              now_ms: int, label: str | None = None) -> Event:
        """Remove C{member} (C{command} is C{PART}, C{QUIT} or C{KICK}).

        The event goes to everyone who was in the room, the leaver too.

        @raise NotAMember: if C{member} is not in the room.
        """
        if member not in self._members:
            raise NotAMember(member)
        audience = self.audience
        del self._members[member]
        self.audience = tuple(self._members)
        if command == "QUIT":
            params: tuple[str, ...] = (reason or "",)
        elif reason:
            params = (self.channel, reason)
        else:
            params = (self.channel,)
        event = self._event(command, member, params, now_ms, label=label)
        event.audience = audience
        return event

    def post(self, member: Any, command: str, text: str, now_ms: int,
             client_tags: dict[str, str] | None = None,
             label: str | None = None) -> Event:
        """A message or notice from C{member} to the room.

        @raise NotAMember: if C{member} is not in the room.
        """
        if member not in self._members:
            raise NotAMember(member)
        return self._event(command, member, (self.channel, text), now_ms,
                           client_tags=client_tags, label=label)

    def set_topic(self, member: Any, text: str, now_ms: int,
                  label: str | None = None) -> Event:
        """Change the topic.

        @raise NotAMember: if C{member} is not in the room.
        """
        if member not in self._members:
            raise NotAMember(member)
        self.topic = Topic(text, member.source, now_ms)
        return self._event("TOPIC", member, (self.channel, text), now_ms,
                           label=label)

    def refresh(self) -> None:
        """Rebuild the audience after a member changed (nick, capabilities).

        Events already made keep the audience they were made with.
        """
        self.audience = tuple(self._members)
