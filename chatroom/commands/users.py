# -*- test-case-name: tests.test_users -*-
"""Users: WHOIS, WHOWAS, ISON, USERHOST, AWAY, SETNAME.

Numerics and their parameters are RFC 2812's (3.6) and the Modern IRC
document's; where those are silent, Ergo's C{irc/handlers.go}.
"""

from __future__ import annotations

import datetime
from typing import Any

from chatroom.commands.registration import AWAYLEN, REALNAMELEN
from chatroom.core.errors import ParseError
from chatroom.core.ircline import Message, parse_server_time, server_time
from chatroom.core.names import casefold
from chatroom.reply import Reply

#: Nicks answered per C{WHOIS}, C{USERHOST} and C{ISON} (RFC 2812 asks
#: for 5 in C{USERHOST}; the same bound keeps the others short).
MAX_LOOKUPS = 5


def _visible_rooms(host: Any, asker: Any, member: Any) -> list[str]:
    """The rooms of C{member} that C{asker} may see, with prefixes."""
    shown = []
    for room in host.rooms_of(member):
        if not room.visible_to(asker):
            continue
        shown.append(room.prefix_of(member, True) + room.channel)
    return shown


def whois(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """C{WHOIS [server] nick[,nick]}: 311, 312, 319, 301, 671, 317, 318.

    An unknown nick gets C{401} and still C{318}, as in Ergo.
    """
    params = message.params
    if not params or not params[-1]:
        reply.numeric("431", "No nickname given")
        return
    for nick in params[-1].split(",")[:MAX_LOOKUPS]:
        other = host.nick_owner(nick)
        if other is None or not other.registered:
            reply.numeric("401", nick, "No such nick/channel")
            reply.numeric("318", nick, "End of /WHOIS list")
            continue
        name = other.nick
        reply.numeric("311", name, other.user, other.address, "*", other.realname)
        rooms = _visible_rooms(host, connection, other)
        # Keep each 319 line well within 512 bytes.
        while rooms:
            chunk: list[str] = []
            while rooms and sum(len(r) + 1 for r in chunk) + len(rooms[0]) < 400:
                chunk.append(rooms.pop(0))
            reply.numeric("319", name, " ".join(chunk))
        reply.numeric("312", name, host.server_name, "chatroom host")
        if other.oper:
            reply.numeric("313", name, "is an IRC operator")
        if other.bot:
            reply.numeric("335", name, "is a bot on this host")
        if other.away is not None:
            reply.numeric("301", name, other.away)
        if other.tls:
            reply.numeric("671", name, "is using a secure connection")
        now = host.now_ms()
        reply.numeric(
            "317",
            name,
            str(max(0, now - other.last_active_ms) // 1000),
            str(other.signon_ms // 1000),
            "seconds idle, signon time",
        )
        reply.numeric("318", name, "End of /WHOIS list")


def whowas(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """C{WHOWAS nick [count]}: 314 and 312 per remembered user, then 369;
    C{406} before C{369} when nobody used the nick lately."""
    params = message.params
    if not params or not params[0]:
        reply.numeric("431", "No nickname given")
        return
    count = 0
    if len(params) > 1:
        try:
            count = int(params[1])
        except ValueError:
            count = 0
    for nick in params[0].split(",")[:MAX_LOOKUPS]:
        gone = host.whowas(nick, count)
        if not gone:
            reply.numeric("406", nick, "There was no such nickname")
        for entry in gone:
            reply.numeric(
                "314", entry.nick, entry.user, entry.address, "*", entry.realname
            )
            reply.numeric(
                "312", entry.nick, host.server_name, _time_text(entry.time_ms)
            )
        reply.numeric("369", nick, "End of WHOWAS")


def _time_text(time_ms: int) -> str:
    stamp = datetime.datetime.fromtimestamp(time_ms // 1000, datetime.UTC)
    return stamp.strftime("%a, %d %b %Y %H:%M:%S UTC")


def ison(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """C{ISON nick [nick...]}: C{303} with the nicks that are online."""
    online = []
    for param in message.params:
        for nick in param.split():
            other = host.nick_owner(nick)
            if other is not None and other.registered and other.nick not in online:
                online.append(other.nick)
    reply.numeric("303", " ".join(online))


def userhost(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """C{USERHOST nick [nick...]}: C{302} with C{nick=+user@host} (C{-}
    when away), up to five nicks (RFC 2812 4.8)."""
    found = []
    for nick in message.params[:MAX_LOOKUPS]:
        other = host.nick_owner(nick)
        if other is None or not other.registered:
            continue
        found.append(
            "%s%s=%s%s@%s"
            % (
                other.nick,
                "*" if other.oper else "",
                "-" if other.away else "+",
                other.user,
                other.address,
            )
        )
    reply.numeric("302", " ".join(found))


def away(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """C{AWAY :text} marks away (C{306}); C{AWAY} alone clears it (C{305}).

    Everyone sharing a room who negotiated C{away-notify} sees the C{AWAY}
    line (IRCv3 away-notify).
    """
    text = message.params[0][:AWAYLEN] if message.params else ""
    if text:
        connection.away = text
        reply.numeric("306", "You have been marked as being away")
        host.tell_peers(connection, "AWAY", (text,), "away-notify", reply)
    else:
        was_away = connection.away is not None
        connection.away = None
        reply.numeric("305", "You are no longer marked as being away")
        if was_away:
            host.tell_peers(connection, "AWAY", (), "away-notify", reply)


def setname(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """C{SETNAME :realname} (IRCv3 setname): the new real name goes to the
    client and to everyone sharing a room who negotiated C{setname}."""
    text = message.params[0]
    if not text or len(text) > REALNAMELEN:
        reply.send(
            "FAIL",
            "SETNAME",
            "INVALID_REALNAME",
            "Real name must be 1 to %d characters" % (REALNAMELEN,),
        )
        return
    connection.realname = text
    if "setname" in connection.caps:
        reply.send("SETNAME", text, prefix=connection.source)
    host.tell_peers(connection, "SETNAME", (text,), "setname", reply)


def monitor(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """C{MONITOR + nicks}, C{- nicks}, C{C}, C{L}, C{S} (IRCv3 MONITOR).

    Adding answers C{730 :nick!user@host} for each nick online and
    C{731 :nick} for each offline (one per line); a full list C{734}.
    C{L} lists with C{732} and C{733}; C{S} repeats the status.  Only
    nicks are monitored: a mask never matches a nick, so it is never
    online (no stalking by host mask).
    """
    sub = message.params[0].upper() if message.params else ""
    targets = [
        t
        for t in (message.params[1].split(",") if len(message.params) > 1 else [])
        if t
    ]
    if sub == "+":
        for position, nick in enumerate(targets):
            if not host.watch(connection, nick):
                reply.numeric(
                    "734",
                    str(host.limits.monitor_entries),
                    ",".join(targets[position:]),
                    "Monitor list is full",
                )
                break
            _status(host, reply, nick)
    elif sub == "-":
        for nick in targets:
            host.unwatch(connection, nick)
    elif sub == "C":
        host.unwatch_all(connection)
    elif sub == "L":
        names = list(connection.monitoring.values())
        while names:
            chunk: list[str] = []
            while names and sum(len(n) + 1 for n in chunk) + len(names[0]) < 400:
                chunk.append(names.pop(0))
            reply.numeric("732", ",".join(chunk))
        reply.numeric("733", "End of MONITOR list")
    elif sub == "S":
        for nick in connection.monitoring.values():
            _status(host, reply, nick)
    else:
        reply.numeric("461", "MONITOR", "Not enough parameters")


def _status(host: Any, reply: Reply, nick: str) -> None:
    other = host.nick_owner(nick)
    if other is not None and other.registered:
        reply.numeric("730", other.source)
    else:
        reply.numeric("731", nick)


#: Read markers kept per connection (draft/read-marker); the oldest set
#: is forgotten beyond this.
MAX_READ_MARKERS = 1000


def read_marker(connection: Any, target: str) -> str:
    """The C{timestamp=...} of C{target}'s read marker, or C{*}."""
    time_ms = connection.read_markers.get(casefold(target))
    return "*" if time_ms is None else "timestamp=" + server_time(time_ms)


def markread(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """C{MARKREAD target [timestamp=T]} (IRCv3 draft/read-marker): get or
    advance the last-read time of a room or a nick; it never goes back.

    There are no accounts, so markers belong to the connection and go
    with it.
    """
    params = message.params
    if not params or not params[0]:
        reply.send("FAIL", "MARKREAD", "NEED_MORE_PARAMS", "Missing parameters")
        return
    target = params[0]
    if len(params) > 1:
        kind, _, value = params[1].partition("=")
        try:
            if kind != "timestamp":
                raise ParseError(params[1])
            time_ms = parse_server_time(value)
        except ParseError:
            reply.send(
                "FAIL",
                "MARKREAD",
                "INVALID_PARAMS",
                target,
                "Use timestamp=YYYY-MM-DDThh:mm:ss.sssZ",
            )
            return
        markers = connection.read_markers
        folded = casefold(target)
        if time_ms > markers.get(folded, -1):
            markers.pop(folded, None)
            markers[folded] = time_ms
            if len(markers) > MAX_READ_MARKERS:
                del markers[next(iter(markers))]
    reply.send("MARKREAD", target, read_marker(connection, target))
