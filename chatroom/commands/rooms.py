# -*- test-case-name: tests.test_ircserver.RoomTests -*-
"""Room commands: JOIN, PART, NAMES, TOPIC, WHO, MODE, KICK, INVITE.

Membership changes go through the host (L{chatroom.host.RoomHost.join},
C{part}, C{kick}), which updates the room and the member together; room
rules (keys, invitations, operators) are the room's
(L{chatroom.core.room.Room}).  These handlers only read commands and
answer them.
"""

from __future__ import annotations

from typing import Any

from chatroom.commands.registration import TARGMAX, TOPICLEN
from chatroom.commands.users import read_marker
from chatroom.core.ircline import Message
from chatroom.core.names import casefold, fingerprint, valid_room_name
from chatroom.core.room import (
    MissingModeParameter,
    ModeChange,
    NotAMember,
    NotOperator,
    Room,
    UnknownMode,
    mask_matches,
    parse_mode_changes,
)
from chatroom.core.tokenbucket import TokenBucket
from chatroom.reply import Reply


def room_or_403(host: Any, reply: Reply, channel: str) -> Room | None:
    """The room named C{channel}, or C{None} after answering C{403}."""
    room = host.find_room(channel)
    if room is None:
        reply.numeric("403", channel, "No such channel")
    return room


def refuse(reply: Reply, room: Room, error: Exception) -> None:
    """Answer a room's refusal: not a member (442) or not operator (482)."""
    if isinstance(error, NotOperator):
        reply.numeric("482", room.channel, "You're not channel operator")
    else:
        reply.numeric("442", room.channel, "You're not on that channel")


def join(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """Join rooms (C{JOIN #a,#b [key,key]}); C{JOIN 0} leaves every room.

    With C{--open-rooms}, joining a room that does not exist opens it.
    """
    if message.params[0] == "0":
        for room in host.rooms_of(connection):
            host.part(connection, room, None, reply)
        return
    keys = message.params[1].split(",") if len(message.params) > 1 else []
    for index, channel in enumerate(message.params[0].split(",")):
        room = host.find_room(channel)
        if room is None:
            room = _open_room(host, connection, reply, channel)
            if room is None:
                continue
        if connection in room:
            continue
        refusal = room.join_refusal(
            connection,
            keys[index] if index < len(keys) else None,
            connection.client_key,
            connection.password,
        )
        if refusal == "not-allowed":
            host.count("refused-private")
            if connection.client_key is None:
                why = (
                    "it is private: give its password (JOIN %s PASSWORD) "
                    "or connect with a client key on its allow-list" % (room.channel,)
                )
            else:
                why = (
                    "it is private and your client key %s is not on its "
                    "allow-list: give that fingerprint to the host's "
                    "operator" % (fingerprint(connection.client_key),)
                )
            reply.numeric("473", room.channel, "Cannot join channel: " + why)
            continue
        if refusal == "bad-password":
            host.count("refused-private")
            reply.numeric(
                "475", room.channel, "Cannot join channel (+k): wrong password"
            )
            continue
        if refusal is not None:
            code, letter = _JOIN_REFUSALS[refusal]
            reply.numeric(code, room.channel, "Cannot join channel (+%s)" % (letter,))
            continue
        delivery = host.join(connection, room, reply)
        reply.after(delivery, _show_room(host, connection, reply, room))
        if connection.away is not None:
            # IRCv3 away-notify: members learn that the joiner is away.
            audience = tuple(
                m
                for m in room.members
                if m is not connection and "away-notify" in m.caps
            )
            host.relay(connection, "AWAY", (connection.away,), audience, reply)


#: The numeric and mode letter of each L{Room.join_refusal}.
_JOIN_REFUSALS = {
    "full": ("471", "l"),
    "invite-only": ("473", "i"),
    "banned": ("474", "b"),
    "bad-key": ("475", "k"),
}


def _show_room(host: Any, connection: Any, reply: Reply, room: Room):
    """The topic and names a joiner is sent after its C{JOIN}."""

    def show() -> None:
        if connection in room:
            show_room(reply, connection, room)
            if host.fanout is not None:
                host.fanout.member_joined(connection, room, reply)

    return show


def show_room(reply: Reply, connection: Any, room: Room) -> None:
    """What a member is told of a room it is now in: the topic, its read
    marker (IRCv3 C{draft/read-marker}) and the names."""
    send_topic(reply, room, on_join=True)
    if "draft/read-marker" in connection.caps:
        reply.send("MARKREAD", room.channel, read_marker(connection, room.channel))
    send_names(reply, connection, room)


def _open_room(host: Any, connection: Any, reply: Reply, channel: str) -> Room | None:
    """Open room C{channel} for this user, or say why not."""
    limits = host.limits
    if not limits.open_rooms:
        reply.numeric("403", channel, "No such channel")
        return None
    name = channel[1:] if channel.startswith("#") else ""
    if not valid_room_name(name, limits.room_name_length):
        reply.numeric(
            "479",
            channel,
            "Illegal channel name: use up to %d "
            "letters, digits and -_." % (limits.room_name_length,),
        )
        return None
    if not host.can_open_room():
        host.count("refused-max-rooms")
        reply.numeric("437", channel, "Cannot open more rooms on this host")
        return None
    if connection.opened_rooms is None:
        connection.opened_rooms = TokenBucket(
            limits.opened_per_hour, limits.opened_per_hour / 3600.0
        )
    if not connection.opened_rooms.take(host.clock.seconds()):
        host.count("refused-open-rate")
        reply.numeric("437", channel, "You have opened too many rooms; try again later")
        return None
    return host.open_room(name)


def part(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """Leave rooms, with an optional reason."""
    reason = message.params[1] if len(message.params) > 1 else None
    for channel in message.params[0].split(","):
        room = room_or_403(host, reply, channel)
        if room is None:
            continue
        if connection not in room:
            reply.numeric("442", channel, "You're not on that channel")
            continue
        host.part(connection, room, reason, reply)


def names(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """List who is in a room; a secret room's members only to members."""
    if not message.params:
        reply.numeric("366", "*", "End of /NAMES list")
        return
    # Several rooms: their 353 lines, then one 366 naming them all as
    # asked (Modern IRC; what irctest and Ergo do).
    for channel in message.params[0].split(","):
        room = host.find_room(channel)
        if room is not None and room.visible_to(connection):
            send_names(reply, connection, room, end=False)
    reply.numeric("366", message.params[0], "End of /NAMES list")


def send_names(reply: Reply, connection: Any, room: Room, end: bool = True) -> None:
    """C{353} lines of the room's members, then (with C{end}) C{366}.

    Prefixes as IRCv3 C{multi-prefix} asks, C{nick!user@host} with
    C{userhost-in-names}.
    """
    multi = "multi-prefix" in connection.caps
    full = "userhost-in-names" in connection.caps
    names = [
        room.prefix_of(m, multi) + (m.source if full else m.nick) for m in room.members
    ]
    kind = "@" if room.is_secret else "="
    # Keep each 353 line well inside 512 bytes.
    chunk: list[str] = []
    size = 0
    for name in names:
        if size + len(name) > 400:
            reply.numeric("353", kind, room.channel, " ".join(chunk))
            chunk, size = [], 0
        chunk.append(name)
        size += len(name) + 1
    if chunk:
        reply.numeric("353", kind, room.channel, " ".join(chunk))
    if end:
        reply.numeric("366", room.channel, "End of /NAMES list")


def send_topic(reply: Reply, room: Room, on_join: bool = False) -> None:
    """C{332}/C{333} for the room's topic, or C{331} (not on join)."""
    topic = room.topic
    if not topic.text:
        if not on_join:
            reply.numeric("331", room.channel, "No topic is set")
        return
    reply.numeric("332", room.channel, topic.text)
    # The setter's whole nick!user@host, as InspIRCd sends it: irssi shows
    # its user@host part in brackets, empty ("[]") for a bare nick.
    reply.numeric("333", room.channel, topic.setter, str(topic.time_ms // 1000))


def topic(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """Show or change a room's topic."""
    room = room_or_403(host, reply, message.params[0])
    if room is None:
        return
    if len(message.params) == 1:
        if room.visible_to(connection):
            send_topic(reply, room)
        else:
            reply.numeric("442", room.channel, "You're not on that channel")
        return
    if connection not in room:
        reply.numeric("442", room.channel, "You're not on that channel")
        return
    text = message.params[1][:TOPICLEN]
    try:
        delivery = room.set_topic(connection, text, host.now_ms())
    except NotOperator as error:
        refuse(reply, room, error)
        return
    host.submit(delivery, reply)


def who(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """List a room's members, one user, or the users a mask matches
    (basic C{352} replies, then C{315} with the mask as sent).

    Flags: C{H} here or C{G} gone (away), then the room prefixes
    (all of them with C{multi-prefix}).  A secret room's members are
    listed only to its members.  Every user here is C{+i}, so a mask
    (C{*}, C{al*}) matches only the asker and users sharing a room with
    it; an exact nick is always answered (as Ergo).
    """
    mask = message.params[0] if message.params else "*"
    room = host.find_room(mask)
    if room is not None:
        members: tuple[Any, ...] = room.members if room.visible_to(connection) else ()
    elif "*" in mask or "?" in mask:
        members = tuple(
            member
            for member in host.shared_audience(connection)
            if mask_matches(mask, member.nick) or mask_matches(mask, member.source)
        )
    else:
        owner = host.nick_owner(mask)
        members = (owner,) if owner is not None and owner.registered else ()
    multi = "multi-prefix" in connection.caps
    whox = None
    if len(message.params) > 1 and message.params[1].startswith("%"):
        whox = message.params[1][1:]
    for member in members:
        flags = (
            ("G" if member.away is not None else "H")
            + ("*" if member.oper else "")
            + ("B" if member.bot else "")
        )
        if room is not None:
            flags += room.prefix_of(member, multi)
        channel = room.channel if room else "*"
        if whox is None:
            reply.numeric(
                "352",
                channel,
                member.user,
                member.address,
                host.server_name,
                member.nick,
                flags,
                "0 " + member.realname,
            )
        else:
            reply.numeric("354", *_whox_fields(host, whox, member, channel, flags))
    reply.numeric("315", mask, "End of /WHO list")


def _whox_fields(
    host: Any, spec: str, member: Any, channel: str, flags: str
) -> list[str]:
    """The C{354} fields IRCv3 WHOX asks for (C{%tcuihsnfdlaor[,token]}),
    always in that order; account C{0} (no accounts), op level C{n/a}."""
    letters, _, token = spec.partition(",")
    idle = max(0, host.now_ms() - member.last_active_ms) // 1000
    values = {
        "t": token if token.isascii() and token.isdigit() and len(token) <= 3 else "0",
        "c": channel,
        "u": member.user,
        "i": member.address,
        "h": member.address,
        "s": host.server_name,
        "n": member.nick,
        "f": flags,
        "d": "0",
        "l": str(idle),
        "a": "0",
        "o": "n/a",
        "r": member.realname,
    }
    fields = [values[letter] for letter in "tcuihsnfdlaor" if letter in letters]
    # Only the last field may hold spaces or be empty.
    return [f if f and " " not in f else "*" for f in fields[:-1]] + fields[-1:]


def mode(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """Room modes (C{+i}, C{+t}, C{+k key}, C{+o nick}); users may set C{+i}."""
    target = message.params[0]
    if target.startswith("#"):
        room = room_or_403(host, reply, target)
        if room is not None:
            _room_mode(host, connection, reply, room, message.params[1:])
        return
    if host.nick_owner(target) is None:
        reply.numeric("401", target, "No such nick/channel")
    elif casefold(target) != casefold(connection.nick or ""):
        reply.numeric("502", "Can't change mode for other users")
    elif len(message.params) == 1:
        reply.numeric("221", user_modes(connection))
    else:
        _user_mode(connection, reply, message.params[1])


def user_modes(connection: Any) -> str:
    """The user's modes for C{221}: C{+i} always (nobody is listed to
    strangers), C{w} for C{WALLOPS}, C{o} for a server operator."""
    return (
        "+"
        + ("B" if connection.bot else "")
        + "i"
        + ("o" if connection.oper else "")
        + ("w" if connection.wallops else "")
    )


def _user_mode(connection: Any, reply: Reply, changes: str) -> None:
    """C{MODE nick +w-o}: C{w} may be set and cleared, C{o} only cleared
    (C{OPER} sets it), C{i} is always on; others get C{501}."""
    adding = True
    applied = ""
    sign = ""
    unknown = False
    for letter in changes:
        if letter in "+-":
            adding = letter == "+"
            continue
        if letter == "w" and connection.wallops != adding:
            connection.wallops = adding
        elif letter == "B" and connection.bot != adding:
            connection.bot = adding
        elif letter == "o" and not adding and connection.oper:
            connection.oper = False
        else:
            unknown = unknown or letter not in "Biwo"
            continue
        wanted = "+" if adding else "-"
        if wanted != sign:
            applied += wanted
            sign = wanted
        applied += letter
    if unknown:
        reply.numeric("501", "Unknown MODE flag")
    if applied:
        reply.send("MODE", connection.nick or "*", applied, prefix=connection.source)


def _room_mode(
    host: Any, connection: Any, reply: Reply, room: Room, params: tuple[str, ...]
) -> None:
    if not params:
        reply.numeric("324", room.channel, *room.mode_string(connection in room))
        reply.numeric("329", room.channel, str(room.created_ms // 1000))
        return
    if params[0] in ("e", "+e", "I", "+I"):
        # List queries: this host keeps no such lists.
        reply.numeric(
            {"e": "349", "I": "347"}[params[0][-1]], room.channel, "End of list"
        )
        return
    try:
        changes = parse_mode_changes(params[0], params[1:])
    except UnknownMode as e:
        reply.numeric("472", str(e), "is unknown mode char to me")
        return
    except MissingModeParameter:
        reply.numeric("461", "MODE", "Not enough parameters")
        return
    if any(c.mode == "b" and c.param is None for c in changes):
        send_bans(reply, room)
    changes = [c for c in changes if c.mode != "b" or c.param is not None]
    if not changes:
        return
    valid = []
    for change in changes:
        problem = _invalid_parameter(change)
        if problem is None:
            valid.append(change)
        else:
            # The parameter is echoed only when it is one harmless word;
            # keys never (as Ergo).
            shown = change.param or "*"
            if change.mode == "k" or " " in shown or len(shown) > 50:
                shown = "*"
            reply.numeric("696", room.channel, change.mode, shown, problem)
    refused: list[ModeChange] = []
    try:
        delivery = room.change_modes(
            connection, valid, host.now_ms(), refused, override=connection.oper
        )
    except (NotAMember, NotOperator) as error:
        refuse(reply, room, error)
        return
    for change in refused:
        reply.numeric(
            "478", room.channel, change.param or "*", "Channel ban list is full"
        )
    for change in valid:
        if change.mode in "ov" and room.member_named(change.param or "") is None:
            nick = change.param or "*"
            if host.nick_owner(nick) is None:
                reply.numeric("401", nick, "No such nick/channel")
            else:
                reply.numeric("441", nick, room.channel, "They aren't on that channel")
    if delivery is not None:
        host.save_modes(room)
        host.submit(delivery, reply)


#: Longest room key, in characters (Ergo's limit).
KEYLEN = 23


def _invalid_parameter(change: ModeChange) -> str | None:
    """Why a mode's parameter is refused (C{696 ERR_INVALIDMODEPARAM}),
    or C{None}: a key must be 1 to L{KEYLEN} characters without a space
    or a comma (it travels in C{JOIN #a key,key}); a limit a positive
    whole number."""
    if not change.adding or change.param is None:
        return None
    if change.mode == "k":
        key = change.param
        if not key or " " in key or "," in key or len(key) > KEYLEN:
            return "Invalid key: 1 to %d characters, no space or comma" % (KEYLEN,)
    elif change.mode == "l":
        value = change.param
        if not (value.isascii() and value.isdigit()) or not 0 < int(value) < 2**31:
            return "Invalid limit: a positive whole number"
    elif change.mode == "b":
        if " " in change.param or not change.param or len(change.param) > 200:
            return "Invalid ban mask"
    return None


def send_bans(reply: Reply, room: Room) -> None:
    """C{367} per ban (mask, setter, set time in seconds), then C{368}."""
    for ban in room.bans:
        reply.numeric(
            "367", room.channel, ban.mask, ban.setter, str(ban.time_ms // 1000)
        )
    reply.numeric("368", room.channel, "End of channel ban list")


def kick(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """An operator removes members: C{KICK #room nick[,nick] [:reason]};
    C{KICK #a,#b n1,n2} pairs rooms and nicks (RFC 2812 3.2.8).  Each
    removal is its own C{KICK} line; at most C{TARGMAX} (4) nicks."""
    channels = message.params[0].split(",")
    nicks = message.params[1].split(",")[:TARGMAX]
    if len(channels) == 1:
        pairs = [(channels[0], nick) for nick in nicks]
    elif len(channels) == len(nicks):
        pairs = list(zip(channels, nicks))
    else:
        reply.numeric("461", "KICK", "Not enough parameters")
        return
    reason = (message.params[2] if len(message.params) > 2 else connection.nick or "")[
        :TOPICLEN
    ]
    for channel, nick in pairs:
        room = room_or_403(host, reply, channel)
        if room is None:
            continue
        target = room.member_named(nick)
        if target is None:
            reply.numeric("441", nick, room.channel, "They aren't on that channel")
            continue
        try:
            host.kick(connection, room, target, reason, reply)
        except (NotAMember, NotOperator) as error:
            refuse(reply, room, error)


def invite(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """Invite a user into a room (operators only when it is C{+i}); with no
    parameters, list the rooms this connection is invited to (C{336},
    C{337})."""
    if not message.params:
        for room in sorted(host.rooms.values(), key=lambda room: room.key):
            if connection in room.invited:
                reply.numeric("336", room.channel)
        reply.numeric("337", "End of /INVITE list")
        return
    if len(message.params) < 2:
        reply.numeric("461", "INVITE", "Not enough parameters")
        return
    nick, channel = message.params[:2]
    other = host.nick_owner(nick)
    if other is None or not other.registered:
        reply.numeric("401", nick, "No such nick/channel")
        return
    room = room_or_403(host, reply, channel)
    if room is None:
        return
    if other in room:
        reply.numeric("443", other.nick, room.channel, "is already on channel")
        return
    try:
        room.invite(connection, other)
    except (NotAMember, NotOperator) as error:
        refuse(reply, room, error)
        return
    reply.numeric("341", other.nick, room.channel)
    if other.away is not None:
        reply.numeric("301", other.nick, other.away)
    other.send("INVITE", other.nick, room.channel, prefix=connection.source)
    # IRCv3 invite-notify: members who may see invitations (everyone, or
    # only operators in a +i room, as Ergo) are told too.
    audience = tuple(
        member
        for member in room.members
        if member is not connection
        and "invite-notify" in member.caps
        and ("i" not in room.modes or room.is_operator(member))
    )
    host.relay(connection, "INVITE", (other.nick, room.channel), audience, reply)


def list_rooms(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """C{LIST [terms]}: C{321}, C{322 #room members :topic} per room, C{323}.

    Secret (C{+s}) rooms are listed only to their members.  Terms, comma
    separated (C{ELIST=CMNTU}): C{#a} a room; C{#a*} a mask, C{!#a*} not
    matching it; C{>N}, C{<N} more or fewer members; C{C>N}, C{C<N}
    created more or less than N minutes ago; C{T>N}, C{T<N} the same for
    the topic.  Named rooms are listed if they exist; every other term
    must hold.
    """
    rooms = sorted(host.rooms.values(), key=lambda room: room.key)
    now = host.now_ms()
    terms = message.params[0].split(",") if message.params else []
    named = {
        casefold(t)
        for t in terms
        if t.startswith("#") and "*" not in t and "?" not in t
    }
    if named:
        rooms = [room for room in rooms if casefold(room.channel) in named]
    for term in terms:
        if casefold(term) not in named:
            rooms = [room for room in rooms if _list_term(term, room, now)]
    reply.numeric("321", "Channel", "Users  Name")
    for room in rooms:
        if not room.visible_to(connection):
            continue
        reply.numeric("322", room.channel, str(len(room)), room.topic.text)
    reply.numeric("323", "End of /LIST")


def _list_term(term: str, room: Room, now_ms: int) -> bool:
    """Whether C{room} passes one C{LIST} term (an unknown term passes)."""

    def number(text: str) -> int | None:
        return int(text) if text.isascii() and text.isdigit() else None

    if term.startswith("!"):
        return not mask_matches(term[1:], room.channel)
    if "*" in term or "?" in term:
        return mask_matches(term, room.channel)
    if term.startswith("#"):
        return casefold(term) == casefold(room.channel)
    if term[:1] in "<>" and number(term[1:]) is not None:
        limit = number(term[1:]) or 0
        return len(room) > limit if term[0] == ">" else len(room) < limit
    if term[:1] in "CT" and term[1:2] in "<>" and number(term[2:]) is not None:
        when = room.created_ms if term[0] == "C" else room.topic.time_ms
        if term[0] == "T" and not room.topic.text:
            return False
        minutes = (now_ms - when) / 60000.0
        limit = number(term[2:]) or 0
        return minutes > limit if term[1] == ">" else minutes < limit
    return True
