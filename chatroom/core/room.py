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
from chatroom.core.names import casefold, make_msgid

#: Bit of L{IRoomMember.variant}: the member negotiated C{message-tags}.
MESSAGE_TAGS = 1
#: Bit of L{IRoomMember.variant}: the member negotiated C{server-time}.
SERVER_TIME = 2
#: All variants, for formatting caches.
VARIANTS = 4

#: Commands whose copy goes back to the sender only with C{echo-message}.
POST_COMMANDS = frozenset({"PRIVMSG", "NOTICE", "TAGMSG"})


@attrs.frozen(eq=False)
class Event:
    """One event of a room, or an unsequenced line to several members.

    Wire data only: what is stored and what every recipient is shown.  Who
    receives it and who caused it travel beside it in a L{Delivery}.

    @ivar room: the room key (folded name) or C{None} for lines that belong
        to no single room (a nick change, a private message).
    @ivar seq: the room's sequence number; C{None} for lines that are
        delivered but neither numbered nor stored (C{NICK}, C{TAGMSG}).
    @ivar time_ms: when the host accepted it, in milliseconds since the epoch.
    @ivar command: the IRC command (C{PRIVMSG}, C{JOIN}, ...).
    @ivar source: the C{nick!user@host} of whoever caused it.
    @ivar params: the IRC parameters, the channel first where there is one.
    @ivar client_tags: client-only tags (C{+typing} ...) to relay.
    """

    room: str | None
    seq: int | None
    time_ms: int
    command: str
    source: str
    params: tuple[str, ...]
    client_tags: dict[str, str] = attrs.field(factory=dict)
    # The formatted line per variant, filled on first use: a cache, not
    # state, so the event stays what it was when it happened.
    _lines: list[bytes | None] = attrs.field(
        init=False, factory=lambda: [None] * VARIANTS, repr=False)

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
                cached = b""
            else:
                cached = format_line(self.command, *self.params,
                                     prefix=self.source,
                                     tags=self.tags_for(variant))
            self._lines[variant] = cached
        return cached


@attrs.define(eq=False)
class Delivery:
    """An event on its way: who receives it and who caused it (not stored).

    @ivar event: the event.
    @ivar audience: the members to deliver it to, in order.  Deliveries made
        while membership did not change share the same tuple, which lets the
        host format a run of them once per variant.
    @ivar origin: the member who caused it, if it is still connected; it
        gets its own copy only with C{echo-message} for messages.
    @ivar reply: the reply object of the command that caused it, which
        owns the label and the echo; C{None} for events nobody asked for.
    """

    event: Event
    audience: tuple[Any, ...]
    origin: Any = None
    reply: Any = None


@attrs.define
class Topic:
    """A room's topic, who set it and when."""

    text: str = ""
    setter: str = ""
    time_ms: int = 0


class NotAMember(Exception):
    """The member is not in the room."""


class NotOperator(Exception):
    """The member is not one of the room's operators."""


#: Room modes without a parameter that operators may set (RFC 2811 4.2):
#: invite-only and topic lock.  C{+n} (no messages from outside) is always
#: on: only members may post.
FLAG_MODES = frozenset("it")
#: Every room mode this host knows: the flags, C{n}, the key, operators.
KNOWN_MODES = FLAG_MODES | {"n", "k", "o"}


@attrs.frozen
class ModeChange:
    """One change of a room mode: C{+i}, C{-k}, C{+o nick}..."""

    adding: bool
    mode: str
    param: str | None = None

    def __str__(self) -> str:
        return ("+" if self.adding else "-") + self.mode


class UnknownMode(ValueError):
    """A mode letter this host does not know."""


class MissingModeParameter(ValueError):
    """A mode that needs a parameter came without one."""


def parse_mode_changes(modes: str, params: tuple[str, ...]) -> list[ModeChange]:
    """Read C{+it-k}, C{+k secret}, C{+o-o alice bob} into changes.

    @raise UnknownMode: for a letter outside L{KNOWN_MODES}.
    @raise MissingModeParameter: when C{+k}, C{+o} or C{-o} lacks its
        parameter.
    """
    changes = []
    adding = True
    remaining = list(params)
    for letter in modes:
        if letter in "+-":
            adding = letter == "+"
            continue
        if letter not in KNOWN_MODES:
            raise UnknownMode(letter)
        param = None
        if letter == "o" or (letter == "k" and adding):
            if not remaining:
                raise MissingModeParameter(letter)
            param = remaining.pop(0)
        changes.append(ModeChange(adding, letter, param))
    return changes


class Room:
    """A chat room: its members, its topic and its sequence counter.

    @ivar key: the folded room name (the channel is C{#} plus the name).
    @ivar channel: the channel name as the host spells it, C{#} included.
    @ivar next_seq: the sequence number the next event gets.
    """

    def __init__(self, name: str, next_seq: int = 1,
                 topic: Topic | None = None, opened: bool = False,
                 modes: str = "", channel_key: str = "",
                 created_ms: int = 0) -> None:
        self.key = casefold(name)
        self.channel = "#" + name
        self.next_seq = next_seq
        self.topic = topic if topic is not None else Topic()
        #: Whether a user opened the room (it then has operators).
        self.opened = opened
        self.modes = set(modes) & FLAG_MODES
        self.channel_key = channel_key
        self.created_ms = created_ms
        self.operators: set[Any] = set()
        self.invited: set[str] = set()
        self._members: dict[Any, None] = {}
        #: Members who take the room's events by multicast (fan-out), not
        #: over their own connection.
        self._multicast: set[Any] = set()
        #: Who is sent each event over its own connection: the members not
        #: on multicast delivery.  Replaced (never changed) when membership
        #: or delivery changes, so events share it between changes.
        self.audience: tuple[Any, ...] = ()
        self._member_tuple: tuple[Any, ...] = ()

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
        return self._member_tuple

    def _changed(self) -> None:
        self._member_tuple = tuple(self._members)
        multicast = self._multicast
        self.audience = (tuple(m for m in self._members if m not in multicast)
                         if multicast else self._member_tuple)

    def set_multicast(self, member: Any, multicast: bool) -> None:
        """Deliver the room's events to C{member} by multicast (C{True}) or
        over its own connection (C{False}).

        @raise NotAMember: if C{member} is not in the room.
        """
        if member not in self._members:
            raise NotAMember(member)
        if multicast:
            self._multicast.add(member)
        else:
            self._multicast.discard(member)
        self._changed()

    def on_multicast(self, member: Any) -> bool:
        """Whether C{member} takes the room's events by multicast."""
        return member in self._multicast

    def _event(self, command: str, member: Any, params: tuple[str, ...],
               now_ms: int, client_tags: dict[str, str] | None = None,
               audience: tuple[Any, ...] | None = None) -> Delivery:
        seq = self.next_seq
        self.next_seq = seq + 1
        event = Event(room=self.key, seq=seq, time_ms=now_ms, command=command,
                      source=member.source, params=params,
                      client_tags=client_tags or {})
        return Delivery(event, self.audience if audience is None else audience,
                        origin=member)

    def join_refusal(self, nick: str, key: str | None) -> str | None:
        """Why C{nick} may not join (C{"invite-only"}, C{"bad-key"}), or C{None}."""
        if "i" in self.modes and casefold(nick) not in self.invited:
            return "invite-only"
        if self.channel_key and key != self.channel_key:
            return "bad-key"
        return None

    def join(self, member: Any, now_ms: int) -> Delivery:
        """Add C{member}; the join event goes to everyone, the joiner too.

        In a room a user opened, whoever joins it empty becomes its
        operator, as on IRC networks.
        """
        if self.opened and not self._members:
            self.operators.add(member)
        self.invited.discard(casefold(member.nick))
        self._members[member] = None
        self._changed()
        return self._event("JOIN", member, (self.channel,), now_ms)

    def replace(self, old: Any, new: Any) -> None:
        """C{new} takes C{old}'s place (and operator status) in the room,
        without an event: the same client came back on a new connection.

        @raise NotAMember: if C{old} is not in the room.
        """
        if old not in self._members:
            raise NotAMember(old)
        self._members = {new if m is old else m: None for m in self._members}
        if old in self.operators:
            self.operators.discard(old)
            self.operators.add(new)
        self._multicast.discard(old)
        self._changed()

    def _remove(self, member: Any) -> tuple[Any, ...]:
        """Take C{member} out; return the audience it was part of.

        @raise NotAMember: if C{member} is not in the room.
        """
        if member not in self._members:
            raise NotAMember(member)
        audience = self.audience
        if member in self._multicast:
            # Its own PART, QUIT or KICK reaches it over its connection,
            # as IRC requires; the others on multicast get it by datagram.
            self._multicast.discard(member)
            audience = audience + (member,)
        del self._members[member]
        self.operators.discard(member)
        self._changed()
        return audience

    def leave(self, member: Any, command: str, reason: str | None,
              now_ms: int) -> Delivery:
        """Remove C{member} (C{command} is C{PART}, C{QUIT} or C{KICK}).

        The event goes to everyone who was in the room, the leaver too.

        @raise NotAMember: if C{member} is not in the room.
        """
        audience = self._remove(member)
        if command == "QUIT":
            params: tuple[str, ...] = (reason or "",)
        elif reason:
            params = (self.channel, reason)
        else:
            params = (self.channel,)
        return self._event(command, member, params, now_ms, audience=audience)

    def post(self, member: Any, command: str, text: str, now_ms: int,
             client_tags: dict[str, str] | None = None) -> Delivery:
        """A message or notice from C{member} to the room.

        @raise NotAMember: if C{member} is not in the room.
        """
        if member not in self._members:
            raise NotAMember(member)
        return self._event(command, member, (self.channel, text), now_ms,
                           client_tags=client_tags)

    def set_topic(self, member: Any, text: str, now_ms: int) -> Delivery:
        """Change the topic.

        @raise NotAMember: if C{member} is not in the room.
        @raise NotOperator: if the topic is locked (C{+t}) and C{member} is
            not an operator.
        """
        if member not in self._members:
            raise NotAMember(member)
        if "t" in self.modes and member not in self.operators:
            raise NotOperator(member)
        self.topic = Topic(text, member.source, now_ms)
        return self._event("TOPIC", member, (self.channel, text), now_ms)

    def is_operator(self, member: Any) -> bool:
        """Whether C{member} is one of the room's operators."""
        return member in self.operators

    def member_named(self, nick: str) -> Any:
        """The member using C{nick}, or C{None}."""
        folded = casefold(nick)
        for member in self._members:
            if casefold(member.nick) == folded:
                return member
        return None

    def _require_operator(self, member: Any) -> None:
        if member not in self._members:
            raise NotAMember(member)
        if member not in self.operators:
            raise NotOperator(member)

    def kick(self, member: Any, target: Any, reason: str,
             now_ms: int) -> Delivery:
        """Operator C{member} removes C{target} from the room.

        @raise NotOperator: if C{member} is not an operator.
        @raise NotAMember: if C{member} or C{target} is not in the room.
        """
        self._require_operator(member)
        audience = self._remove(target)
        return self._event("KICK", member, (self.channel, target.nick, reason),
                           now_ms, audience=audience)

    def invite(self, member: Any, nick: str) -> None:
        """C{member} invites C{nick}; in a C{+i} room only operators may.

        @raise NotAMember: if C{member} is not in the room.
        @raise NotOperator: if the room is C{+i} and C{member} is no operator.
        """
        if member not in self._members:
            raise NotAMember(member)
        if "i" in self.modes and member not in self.operators:
            raise NotOperator(member)
        self.invited.add(casefold(nick))

    def change_modes(self, member: Any, changes: list[ModeChange],
                     now_ms: int) -> Delivery | None:
        """Operator C{member} applies C{changes}; the event shows what changed.

        Changes that change nothing (C{+i} on a C{+i} room, C{+o} of someone
        not in the room) are left out; C{None} when nothing is left.

        @raise NotOperator: if C{member} is not an operator.
        @raise NotAMember: if C{member} is not in the room.
        """
        self._require_operator(member)
        applied: list[ModeChange] = []
        for change in changes:
            if change.mode == "n":
                continue  # always on
            if change.mode in FLAG_MODES:
                if (change.mode in self.modes) == change.adding:
                    continue
                (self.modes.add if change.adding else self.modes.discard)(change.mode)
            elif change.mode == "k":
                if change.adding:
                    self.channel_key = change.param or ""
                elif not self.channel_key:
                    continue
                else:
                    self.channel_key = ""
                    change = ModeChange(False, "k", "*")
            elif change.mode == "o":
                target = self.member_named(change.param or "")
                if target is None or (target in self.operators) == change.adding:
                    continue
                (self.operators.add if change.adding else self.operators.discard)(target)
                change = ModeChange(change.adding, "o", target.nick)
            applied.append(change)
        if not applied:
            return None
        text = ""
        sign = None
        for change in applied:
            if change.adding != sign:
                sign = change.adding
                text += "+" if sign else "-"
            text += change.mode
        params = tuple(c.param for c in applied if c.param is not None)
        return self._event("MODE", member, (self.channel, text, *params), now_ms)

    def mode_string(self, show_key: bool) -> tuple[str, ...]:
        """The room's modes for C{324}: C{("+int",)} or C{("+ik", key)}."""
        letters = "".join(sorted(self.modes | {"n"}))
        if self.channel_key:
            return ("+" + letters + "k", self.channel_key if show_key else "*")
        return ("+" + letters,)
