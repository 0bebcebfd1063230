# -*- test-case-name: tests.test_room -*-
"""The sequencer: a room's members and the totally ordered events they see.

A L{Room} assigns every event (message, notice, join, part, quit, topic) the
room's next sequence number and records who must receive it.  It does no
I/O and reads no clock: the caller passes the time in.  Membership changes
replace the room's audience tuple, so an event only holds a reference to the
audience current when it happened; nothing per member is done per event.
"""

from __future__ import annotations

import weakref
from typing import Any, Final, Iterable

import attrs

from chatroom.core.ircline import format_line, server_time
from chatroom.core.names import casefold, fingerprint, make_msgid

#: Bit of L{IRoomMember.variant}: the member negotiated C{message-tags}.
MESSAGE_TAGS = 1
#: Bit of L{IRoomMember.variant}: the member negotiated C{server-time}.
SERVER_TIME = 2
#: Bit of L{IRoomMember.variant}: the member negotiated C{extended-join}
#: (C{JOIN #room account :realname}, account C{*}: no accounts here).
EXTENDED_JOIN = 4
#: All variants, for formatting caches.
VARIANTS = 8

#: Commands whose copy goes back to the sender only with C{echo-message}.
POST_COMMANDS = frozenset({"PRIVMSG", "NOTICE", "TAGMSG"})


class Event:
    """One event of a room, or an unsequenced line to several members.

    Wire data only: what is stored and what every recipient is shown.  Who
    receives it and who caused it travel beside it in a L{Delivery}.

    An event never changes after it happened: every field is C{Final}, so
    C{mypy --strict} refuses an assignment to one anywhere it is checked.
    It is a plain slotted class rather than a frozen attrs class because one
    is made per message, and attrs' frozen C{__init__} costs twice as much
    (1.8 against 0.8 microseconds here, measured 2026-11-30).

    @ivar room: the room key (folded name) or C{None} for lines that belong
        to no single room (a nick change, a private message).
    @ivar seq: the room's sequence number; C{None} for lines that are
        delivered but neither numbered nor stored (C{NICK}, C{TAGMSG}).
    @ivar time_ms: when the host accepted it, in milliseconds since the epoch.
    @ivar command: the IRC command (C{PRIVMSG}, C{JOIN}, ...).
    @ivar source: the C{nick!user@host} of whoever caused it.
    @ivar params: the IRC parameters, the channel first where there is one.
    @ivar client_tags: client-only tags (C{+typing} ...) to relay.
    @ivar unsequenced_id: the C{msgid} of an event without a sequence
        number (a private message, a C{TAGMSG}), or C{None}.
    @ivar realname: the joiner's real name, for C{JOIN} lines to members
        with C{extended-join}; not stored.
    @ivar bot: whether the source is a bot (user mode C{+B}): members with
        C{message-tags} see a C{bot} tag (IRCv3 bot-mode); not stored.
    """

    __slots__ = (
        "room",
        "seq",
        "time_ms",
        "command",
        "source",
        "params",
        "client_tags",
        "unsequenced_id",
        "realname",
        "bot",
        "_lines",
    )

    def __init__(
        self,
        room: str | None,
        seq: int | None,
        time_ms: int,
        command: str,
        source: str,
        params: tuple[str, ...],
        client_tags: dict[str, str] | None = None,
        unsequenced_id: str | None = None,
        realname: str | None = None,
        bot: bool = False,
    ) -> None:
        self.room: Final = room
        self.seq: Final = seq
        self.time_ms: Final = time_ms
        self.command: Final = command
        self.source: Final = source
        self.params: Final = params
        self.client_tags: Final[dict[str, str]] = (
            {} if client_tags is None else client_tags
        )
        self.unsequenced_id: Final = unsequenced_id
        self.realname: Final = realname
        self.bot: Final = bot
        # The formatted line per variant, made on first use: a cache, not
        # state, so the event stays what it was when it happened.  Made
        # lazily because events read from history are often never
        # formatted.
        self._lines: list[bytes | None] | None = None

    def __repr__(self) -> str:
        return "<Event %s %s seq=%r %r>" % (
            self.room,
            self.command,
            self.seq,
            self.params,
        )

    @property
    def msgid(self) -> str | None:
        """The IRCv3 C{msgid} tag value, carrying the sequence number."""
        if self.seq is None or self.room is None:
            return self.unsequenced_id
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
            if self.bot:
                tags["bot"] = ""
            tags.update(self.client_tags)
        return tags

    def params_for(self, variant: int) -> tuple[str, ...]:
        """The parameters a member of C{variant} is shown: a C{JOIN} gains
        account (C{*}) and real name with C{extended-join}, when known."""
        if (
            self.command == "JOIN"
            and variant & EXTENDED_JOIN
            and self.realname is not None
        ):
            return (*self.params, "*", self.realname)
        return self.params

    def line(self, variant: int) -> bytes:
        """The event as a line for members of C{variant}, formatted once."""
        lines = self._lines
        if lines is None:
            lines = self._lines = [None] * VARIANTS
        cached = lines[variant]
        if cached is None:
            if self.command == "TAGMSG" and not variant & MESSAGE_TAGS:
                # A TAGMSG is nothing but tags: members without
                # message-tags are not sent it at all.
                cached = b""
            else:
                cached = format_line(
                    self.command,
                    *self.params_for(variant),
                    prefix=self.source,
                    tags=self.tags_for(variant),
                )
            lines[variant] = cached
        return cached


class Delivery:
    """An event on its way: who receives it and who caused it (not stored).

    A plain slotted class, not attrs: one is made per message.

    @ivar event: the event.
    @ivar audience: the members to deliver it to, in order.  Deliveries made
        while membership did not change share the same tuple, which lets the
        host format a run of them once per variant.
    @ivar origin: the member who caused it, if it is still connected; it
        gets its own copy only with C{echo-message} for messages.
    @ivar reply: the reply object of the command that caused it, which
        owns the label and the echo; C{None} for events nobody asked for.
    @ivar lines: what that reply says in this event's place (its echo, and
        follow-ups such as the names after a C{JOIN}); C{None} until the
        reply has something to put there.
    """

    __slots__ = ("event", "audience", "origin", "reply", "lines")

    def __init__(
        self,
        event: Event,
        audience: tuple[Any, ...],
        origin: Any = None,
        reply: Any = None,
    ) -> None:
        self.event = event
        self.audience = audience
        self.origin = origin
        self.reply = reply
        self.lines: list[bytes] | None = None

    def __repr__(self) -> str:
        return "<Delivery %s seq=%r to %d>" % (
            self.event.command,
            self.event.seq,
            len(self.audience),
        )


@attrs.define
class Topic:
    """A room's topic, who set it and when."""

    text: str = ""
    setter: str = ""
    time_ms: int = 0


@attrs.frozen
class RoomAccess:
    """Who may join a private room: anyone with the password, or a client
    whose key (its TLS client certificate) is on the allow-list.

    @ivar password: the room password (the channel key of C{JOIN}, or
        C{PASS}); C{""} for none.
    @ivar allowed: fingerprints (L{chatroom.core.names.fingerprint}, 64
        lowercase hex digits) of the client keys allowed in.
    """

    password: str = ""
    allowed: frozenset[str] = frozenset()

    def admits(self, client_key: bytes | None, password: str | None) -> bool:
        """Whether a client with C{client_key} (raw Ed25519 key, or C{None})
        that gave C{password} may join."""
        if client_key is not None and fingerprint(client_key) in self.allowed:
            return True
        return bool(self.password) and password == self.password


class NotAMember(Exception):
    """The member is not in the room."""


class NotOperator(Exception):
    """The member is not one of the room's operators."""


#: Room modes without a parameter that operators may set (RFC 2811 4.2):
#: no CTCP but ACTION, invite-only, moderated, no messages from outside,
#: secret and topic lock.  Every room starts C{+n}.
FLAG_MODES = frozenset("Cimnst")
#: Every room mode this host knows: the flags, C{n}, bans, the key, the
#: member limit, operators and voice (C{CHANMODES=b,k,l,imnst},
#: C{PREFIX=(ov)@+}).
KNOWN_MODES = FLAG_MODES | {"b", "k", "l", "o", "v"}
#: Mode changes with a parameter applied per C{MODE} command (C{MODES=}
#: in ISUPPORT; Ergo's default); further ones are ignored.
MAX_MODE_CHANGES = 4
#: Most masks in a room's ban list (C{MAXLIST=b:60}, Ergo's default);
#: more are refused with C{478}.
MAX_BANS = 60


@attrs.frozen
class ModeChange:
    """One change of a room mode: C{+i}, C{-k}, C{+o nick}...

    C{+b} or C{b} without a mask asks for the ban list.
    """

    adding: bool
    mode: str
    param: str | None = None

    def __str__(self) -> str:
        return ("+" if self.adding else "-") + self.mode


@attrs.frozen
class Ban:
    """One entry of a room's ban list: the mask, who set it and when."""

    mask: str
    setter: str
    time_ms: int


class UnknownMode(ValueError):
    """A mode letter this host does not know."""


class MissingModeParameter(ValueError):
    """A mode that needs a parameter came without one."""


def parse_mode_changes(modes: str, params: tuple[str, ...]) -> list[ModeChange]:
    """Read C{+it-k}, C{+k secret}, C{+o-o alice bob}, C{+b mask} into changes.

    At most L{MAX_MODE_CHANGES} changes with a parameter are kept.

    @raise UnknownMode: for a letter outside L{KNOWN_MODES}.
    @raise MissingModeParameter: when C{+k}, C{+l}, C{+o}, C{-o}, C{+v} or
        C{-v} lacks its parameter.
    """
    changes = []
    adding = True
    remaining = list(params)
    with_param = 0
    for letter in modes:
        if letter in "+-":
            adding = letter == "+"
            continue
        if letter not in KNOWN_MODES:
            raise UnknownMode(letter)
        param = None
        if letter in "ov" or (letter in "kl" and adding):
            if not remaining:
                raise MissingModeParameter(letter)
            param = remaining.pop(0)
        elif letter == "b" and remaining:
            param = remaining.pop(0)
        if param is not None:
            with_param += 1
            if with_param > MAX_MODE_CHANGES:
                continue
        changes.append(ModeChange(adding, letter, param))
    return changes


def normalise_mask(mask: str) -> str:
    """A ban mask in full C{nick!user@host} form: C{bob} is C{bob!*@*},
    C{*@host} is C{*!*@host} (as Ergo and most servers do)."""
    if "!" not in mask and "@" not in mask:
        return mask + "!*@*"
    if "!" not in mask:
        return "*!" + mask
    if "@" not in mask:
        return mask + "@*"
    return mask


def mask_matches(mask: str, source: str) -> bool:
    """Whether C{source} (C{nick!user@host}) matches C{mask}, where C{*}
    is any run of characters and C{?} one character, case-insensitively."""
    pattern = casefold(mask)
    text = casefold(source)
    # Iterative wildcard match: linear in practice, no backtracking blowup.
    p = t = 0
    star = -1
    mark = 0
    while t < len(text):
        if p < len(pattern) and pattern[p] in ("?", text[t]):
            p += 1
            t += 1
        elif p < len(pattern) and pattern[p] == "*":
            star, mark = p, t
            p += 1
        elif star != -1:
            p = star + 1
            mark += 1
            t = mark
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


class Room:
    """A chat room: its members, its topic and its sequence counter.

    @ivar key: the folded room name (the channel is C{#} plus the name).
    @ivar channel: the channel name as the host spells it, C{#} included.
    @ivar next_seq: the sequence number the next event gets.
    """

    def __init__(
        self,
        name: str,
        next_seq: int = 1,
        topic: Topic | None = None,
        opened: bool = False,
        modes: str = "n",
        channel_key: str = "",
        created_ms: int = 0,
        limit: int = 0,
        bans: Iterable[Ban] = (),
    ) -> None:
        self.key = casefold(name)
        self.channel = "#" + name
        self.next_seq = next_seq
        self.topic = topic if topic is not None else Topic()
        #: Whether a user opened the room (it then has operators).
        self.opened = opened
        self.modes = set(modes) & FLAG_MODES
        self.channel_key = channel_key
        self.created_ms = created_ms
        #: Who may join, when the room is private (C{--private}); C{None}
        #: for a public room.
        self.access: RoomAccess | None = None
        #: The member limit (C{+l}), 0 for none.
        self.limit = limit
        self.bans: list[Ban] = list(bans)
        # Grants belong to connections, never to nicks that someone else
        # may take later; a member that goes away takes its grants along.
        self.operators: set[Any] = set()
        self.voiced: set[Any] = set()
        self.invited: weakref.WeakSet[Any] = weakref.WeakSet()
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
            self.channel,
            self.next_seq,
            len(self._members),
        )

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
        self.audience = (
            tuple(m for m in self._members if m not in multicast)
            if multicast
            else self._member_tuple
        )

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

    def _event(
        self,
        command: str,
        member: Any,
        params: tuple[str, ...],
        now_ms: int,
        client_tags: dict[str, str] | None = None,
        audience: tuple[Any, ...] | None = None,
        realname: str | None = None,
        bot: bool = False,
        source: str | None = None,
    ) -> Delivery:
        """The next numbered event: C{member}'s (its source, its origin),
        or, with C{member} C{None}, from C{source} alone."""
        seq = self.next_seq
        self.next_seq = seq + 1
        event = Event(
            room=self.key,
            seq=seq,
            time_ms=now_ms,
            command=command,
            source=member.source if source is None else source,
            params=params,
            client_tags=client_tags,
            realname=realname,
            bot=bot,
        )
        return Delivery(
            event, self.audience if audience is None else audience, origin=member
        )

    @property
    def private(self) -> bool:
        """Whether only the clients L{access} admits may join; non-members
        then see neither its members nor its history."""
        return self.access is not None

    @property
    def is_secret(self) -> bool:
        """Whether the room is C{+s} or private: left out of C{LIST},
        C{NAMES} and C{WHOIS} for non-members."""
        return "s" in self.modes or self.access is not None

    def visible_to(self, member: Any) -> bool:
        """Whether C{member} may see who is in the room, its topic and that
        it exists at all: everyone for a public room, only members for a
        secret (C{+s}) or private one."""
        return member in self._members or not self.is_secret

    def is_banned(self, member: Any) -> bool:
        """Whether C{member}'s C{nick!user@host} matches a ban mask."""
        if not self.bans:
            return False  # the common case, on every message
        return any(mask_matches(ban.mask, member.source) for ban in self.bans)

    def join_refusal(
        self,
        member: Any,
        key: str | None,
        client_key: bytes | None = None,
        password: str | None = None,
    ) -> str | None:
        """Why C{member} may not join, or C{None}.

        A private room first: C{"not-allowed"} (no key on its list and no
        right password) or C{"bad-password"} (a password was given and is
        wrong).  Then, in Ergo's order, C{"full"} (C{+l}), C{"bad-key"},
        C{"invite-only"} or C{"banned"}; an invitation lets a member past
        C{+l}, C{+i} and bans.

        @param key: the channel key given with C{JOIN}.
        @param client_key: the raw key of the client's TLS certificate.
        @param password: what the client gave with C{PASS}.
        """
        access = self.access
        if access is not None:
            given = key if key is not None else password
            if not access.admits(client_key, given):
                return "bad-password" if given else "not-allowed"
        invited = member in self.invited
        if self.limit and len(self._members) >= self.limit and not invited:
            return "full"
        if self.channel_key and key != self.channel_key:
            return "bad-key"
        if "i" in self.modes and not invited:
            return "invite-only"
        if not invited and self.is_banned(member):
            return "banned"
        return None

    def refuses_ctcp(self, text: str) -> bool:
        """Whether C{+C} refuses C{text}: a CTCP other than C{ACTION}."""
        return (
            "C" in self.modes
            and text.startswith("\x01")
            and not text.startswith("\x01ACTION")
        )

    def may_post(self, member: Any) -> bool:
        """Whether C{member} may post: a member (or anyone when the room is
        C{-n}), and when the room is moderated (C{+m}) or it is banned,
        voiced or an operator."""
        if member not in self._members:
            return (
                "n" not in self.modes
                and "m" not in self.modes
                and not self.is_banned(member)
            )
        if member in self.operators or member in self.voiced:
            return True
        return "m" not in self.modes and not self.is_banned(member)

    def prefix_of(self, member: Any, multi: bool) -> str:
        """C{@}, C{+}, C{@+} or nothing before a member's nick; all its
        prefixes with IRCv3 C{multi-prefix}, else the highest."""
        prefix = ("@" if member in self.operators else "") + (
            "+" if member in self.voiced else ""
        )
        return prefix if multi else prefix[:1]

    def join(self, member: Any, now_ms: int) -> Delivery:
        """Add C{member}; the join event goes to everyone, the joiner too.

        In a room a user opened, whoever joins it empty becomes its
        operator, as on IRC networks.
        """
        if self.opened and not self._members:
            self.operators.add(member)
        self.invited.discard(member)
        self._members[member] = None
        self._changed()
        return self._event(
            "JOIN",
            member,
            (self.channel,),
            now_ms,
            realname=getattr(member, "realname", ""),
        )

    def replace(self, old: Any, new: Any) -> None:
        """C{new} takes C{old}'s place (and operator status) in the room,
        without an event: the same client came back on a new connection.

        @raise NotAMember: if C{old} is not in the room.
        """
        if old not in self._members:
            raise NotAMember(old)
        self._members = {new if m is old else m: None for m in self._members}
        # The same client keeps what it was granted: operator status, voice
        # and an invitation it has not used yet.
        for grants in (self.operators, self.voiced, self.invited):
            if old in grants:
                grants.discard(old)
                grants.add(new)
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
        self.voiced.discard(member)
        self._changed()
        return audience

    def leave(
        self, member: Any, command: str, reason: str | None, now_ms: int
    ) -> Delivery:
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

    def gone(self, source: str, reason: str, now_ms: int) -> Delivery:
        """A C{QUIT} for C{source}, whom the stored history shows in the
        room but who is not in it: the host before this one stopped
        without recording its members' leaving (it was killed).  The event
        is numbered and stored like any other and goes to nobody (nobody
        is connected yet when a room is opened).
        """
        return self._event("QUIT", None, (reason,), now_ms, audience=(), source=source)

    def post(
        self,
        member: Any,
        command: str,
        text: str,
        now_ms: int,
        client_tags: dict[str, str] | None = None,
    ) -> Delivery:
        """A message or notice from C{member} to the room; from outside
        only when the room is C{-n} (the sender then is sent it too, for
        its echo).

        @raise NotAMember: if C{member} is not in the room and it is C{+n}.
        """
        audience = None
        if member not in self._members:
            if "n" in self.modes:
                raise NotAMember(member)
            audience = (*self.audience, member)
        return self._event(
            command,
            member,
            (self.channel, text),
            now_ms,
            client_tags=client_tags,
            audience=audience,
            bot=getattr(member, "bot", False),
        )

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

    def kick(self, member: Any, target: Any, reason: str, now_ms: int) -> Delivery:
        """Operator C{member} removes C{target} from the room.

        @raise NotOperator: if C{member} is not an operator.
        @raise NotAMember: if C{member} or C{target} is not in the room.
        """
        self._require_operator(member)
        audience = self._remove(target)
        return self._event(
            "KICK",
            member,
            (self.channel, target.nick, reason),
            now_ms,
            audience=audience,
        )

    def invite(self, member: Any, other: Any) -> None:
        """C{member} invites C{other}; in a C{+i} room only operators may.

        @raise NotAMember: if C{member} is not in the room.
        @raise NotOperator: if the room is C{+i} and C{member} is no operator.
        """
        if member not in self._members:
            raise NotAMember(member)
        if "i" in self.modes and member not in self.operators:
            raise NotOperator(member)
        self.invited.add(other)

    def change_modes(
        self,
        member: Any,
        changes: list[ModeChange],
        now_ms: int,
        refused: list[ModeChange] | None = None,
        override: bool = False,
    ) -> Delivery | None:
        """Operator C{member} applies C{changes}; the event shows what changed.

        Changes that change nothing (C{+i} on a C{+i} room, C{+o} of someone
        not in the room, a ban already listed) are left out; C{None} when
        nothing is left.  A C{+b} beyond L{MAX_BANS} is added to C{refused}.
        Ban list queries (C{b} without a mask) are the caller's.

        @param override: C{member} may change modes without being one of
            the room's operators (a server operator: the host's own rooms
            have no operators otherwise).
        @raise NotOperator: if C{member} is not an operator.
        @raise NotAMember: if C{member} is not in the room.
        """
        if override:
            if member not in self._members:
                raise NotAMember(member)
        else:
            self._require_operator(member)
        applied: list[ModeChange] = []
        for change in changes:
            mode, adding = change.mode, change.adding
            if mode == "b" and change.param is None:
                continue  # a list query
            if mode in FLAG_MODES:
                if (mode in self.modes) == adding:
                    continue
                (self.modes.add if adding else self.modes.discard)(mode)
            elif mode == "k":
                if adding:
                    self.channel_key = change.param or ""
                elif not self.channel_key:
                    continue
                else:
                    self.channel_key = ""
                    change = ModeChange(False, "k", "*")
            elif mode == "l":
                if adding:
                    self.limit = int(change.param or "0")
                elif not self.limit:
                    continue
                else:
                    self.limit = 0
            elif mode == "b":
                mask = normalise_mask(change.param or "")
                known = [
                    ban for ban in self.bans if casefold(ban.mask) == casefold(mask)
                ]
                if adding:
                    if known:
                        continue
                    if len(self.bans) >= MAX_BANS:
                        if refused is not None:
                            refused.append(change)
                        continue
                    self.bans.append(Ban(mask, member.source, now_ms))
                else:
                    if not known:
                        continue
                    self.bans.remove(known[0])
                    mask = known[0].mask
                change = ModeChange(adding, "b", mask)
            elif mode in "ov":
                grants = self.operators if mode == "o" else self.voiced
                target = self.member_named(change.param or "")
                if target is None or (target in grants) == adding:
                    continue
                (grants.add if adding else grants.discard)(target)
                change = ModeChange(adding, mode, target.nick)
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
        """The room's modes for C{324}: C{("+int",)}, C{("+iklnt", key,
        "10")}; the key is C{*} unless C{show_key}."""
        letters = "".join(sorted(self.modes))
        params: list[str] = []
        if self.channel_key:
            letters += "k"
            params.append(self.channel_key if show_key else "*")
        if self.limit:
            letters += "l"
            params.append(str(self.limit))
        return ("+" + letters, *params)
