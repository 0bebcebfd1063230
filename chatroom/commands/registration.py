# -*- test-case-name: tests.test_ircserver.RegistrationTests -*-
"""Registration and connection upkeep: CAP, NICK, USER, PING, PONG, QUIT, MOTD."""

from __future__ import annotations

import datetime
import re
from typing import Any

from chatroom import __version__
from chatroom.core.ircline import MAX_IRC_BYTES, Message, server_time
from chatroom.wellknown import (
    FANOUT_CAPABILITY,
    FANOUT_REQUIRED_CAPABILITIES,
    TAKEOVER_CAPABILITY,
    TAKEOVER_REASON,
)
from chatroom.core.names import casefold
from chatroom.core.room import MAX_BANS, MAX_MODE_CHANGES
from chatroom.reply import Reply

#: The capabilities this host offers: IRCv3 names, and chatroom's session
#: takeover (docs/protocol-room.rst).
CAPABILITIES = (
    "away-notify",
    "batch",
    "cap-notify",
    "draft/chathistory",
    "draft/event-playback",
    "draft/read-marker",
    "echo-message",
    "extended-join",
    "extended-monitor",
    "invite-notify",
    "labeled-response",
    "message-tags",
    "multi-prefix",
    "server-time",
    "setname",
    "userhost-in-names",
    TAKEOVER_CAPABILITY,
)

NICKLEN = 30
TOPICLEN = 390
TARGMAX = 4
#: Longest away message kept, in characters (C{AWAYLEN}, Ergo's default).
AWAYLEN = 390
#: Longest real name kept, in characters: a C{311} or C{352} with the
#: longest nick, user, host and this name stays within 512 bytes.
REALNAMELEN = 150

# RFC 2812 2.3.1: nickname = ( letter / special ) *8( letter / digit /
# special / "-" ); we allow NICKLEN characters.
_NICK = re.compile(
    r"^[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]{0,%d}$" % (NICKLEN - 1,)
)


def isupport_tokens(limits: Any) -> list[str]:
    """The C{005 RPL_ISUPPORT} tokens, as the protocol document lists them."""
    return [
        "CASEMAPPING=ascii",
        "CHANTYPES=#",
        "CHANNELLEN=%d" % (limits.room_name_length + 1,),
        "NICKLEN=%d" % (NICKLEN,),
        "TOPICLEN=%d" % (TOPICLEN,),
        "PREFIX=(ov)@+",
        "CHANMODES=b,k,l,Cimnst",
        "NETWORK=chatroom",
        "MODES=%d" % (MAX_MODE_CHANGES,),
        "MAXLIST=b:%d" % (MAX_BANS,),
        "AWAYLEN=%d" % (AWAYLEN,),
        "KICKLEN=%d" % (TOPICLEN,),
        "CHANLIMIT=#:%d" % (limits.max_rooms,),
        "ELIST=CMNTU",
        "BOT=B",
        "STATUSMSG=@+",
        "MONITOR=%d" % (limits.monitor_entries,),
        "WHOX",
        "TARGMAX=PRIVMSG:%d,NOTICE:%d,TAGMSG:%d,JOIN:,PART:,KICK:%d,NAMES:,"
        "WHOIS:5,MONITOR:" % (TARGMAX, TARGMAX, TARGMAX, TARGMAX),
        "CHATHISTORY=%d" % (limits.history_limit,),
        "MSGREFTYPES=msgid,timestamp",
        "UTF8ONLY",
        "LINELEN=%d" % (MAX_IRC_BYTES,),
    ]


def offered_capabilities(host: Any) -> tuple[str, ...]:
    """What C{CAP LS} lists: the IRCv3 capabilities, and the fan-out vendor
    capability when the host offers multicast delivery."""
    if host.fanout is None:
        return CAPABILITIES
    return CAPABILITIES + (FANOUT_CAPABILITY,)


def cap(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """CAP LS / LIST / REQ / END (IRCv3 capability negotiation, 302)."""
    params = message.params
    sub = params[0].upper() if params else ""
    target = connection.nick or "*"
    offered = offered_capabilities(host)
    if sub == "LS":
        if not connection.registered:
            connection.cap_negotiating = True
        reply.send("CAP", target, "LS", " ".join(offered))
    elif sub == "LIST":
        reply.send("CAP", target, "LIST", " ".join(sorted(connection.caps)))
    elif sub == "REQ" and len(params) > 1:
        if not connection.registered:
            connection.cap_negotiating = True
        wanted = params[1].split()
        caps = set(connection.caps)
        for name in wanted:
            if name.startswith("-"):
                caps.discard(name[1:])
            else:
                caps.add(name)
        # One unknown or malformed name (C{--batch}, C{batch=1}) and the
        # whole request is refused (IRCv3 capability negotiation); so is
        # fan-out without the capabilities it needs.
        if (
            wanted
            and all(_cap_name(c) in offered for c in wanted)
            and (FANOUT_CAPABILITY not in caps or FANOUT_REQUIRED_CAPABILITIES <= caps)
        ):
            connection.set_caps(caps)
            reply.send("CAP", target, "ACK", params[1])
        else:
            reply.send("CAP", target, "NAK", params[1])
    elif sub == "END":
        if connection.cap_negotiating:
            connection.cap_negotiating = False
            try_register(host, connection, reply)
    else:
        reply.numeric("410", sub or "*", "Invalid CAP command")


def _cap_name(text: str) -> str:
    """The capability a C{CAP REQ} item names (C{-name} removes it)."""
    return text[1:] if text.startswith("-") else text


def nick(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """Choose or change the nickname."""
    if not message.params or not message.params[0]:
        reply.numeric("431", "No nickname given")
        return
    new = message.params[0]
    if not _NICK.match(new):
        reply.numeric("432", new, "Erroneous nickname")
        return
    owner = host.nick_owner(new)
    if (
        owner is not None
        and owner is not connection
        # Before registration a nick held under the same client key waits
        # for try_register, once CAP negotiation has said whether this
        # connection takes over (clients send NICK before CAP REQ).
        and not (same_client(owner, connection) and not connection.registered)
    ):
        reply.numeric("433", new, "Nickname is already in use")
        return
    if connection.nick == new:
        return
    if not connection.registered:
        connection.nick = new
        try_register(host, connection, reply)
        return
    old = connection.nick
    host.change_nick(connection, new, reply)
    connection.nick = new
    connection.update_source()
    if casefold(old) != casefold(new):
        host.tell_watchers(connection, old, online=False)
        host.tell_watchers(connection, new, online=True)


#: Longest user name kept, in characters, before the C{~} (Ergo's USERLEN).
USERLEN = 10


def user(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """Give the user name and real name.

    An empty user name or real name gets C{461} (RFC 2812 3.1.3 needs
    both).  Characters that would make the C{nick!user@host} ambiguous
    (C{!}, C{@}) or that IRC cannot carry in a middle parameter are
    dropped, as Ergo does; the real name is cut at L{REALNAMELEN}.
    """
    name = "".join(
        c
        for c in message.params[0]
        if c not in "!@*?,:" and c.isprintable() and not c.isspace()
    )
    realname = message.params[3][:REALNAMELEN]
    if not message.params[0] or not realname:
        reply.numeric("461", "USER", "Not enough parameters")
        return
    connection.user = "~" + (name[:USERLEN] or "user")
    connection.realname = realname
    try_register(host, connection, reply)


def try_register(host: Any, connection: Any, reply: Reply) -> None:
    """Register C{connection} once it has a nick and a user and CAP
    negotiation (if any) ended; welcome it."""
    if (
        connection.registered
        or connection.cap_negotiating
        or connection.nick is None
        or connection.user is None
    ):
        return
    owner = host.nick_owner(connection.nick)
    rooms = []
    if owner is not None and owner is not connection:
        if not may_take_over(owner, connection):
            reply.numeric("433", connection.nick, "Nickname is already in use")
            connection.nick = None
            return
        rooms = host.take_over(owner, connection, TAKEOVER_REASON)
    host.claim_nick(connection, None, connection.nick)
    connection.update_source()
    connection.register()
    _welcome(host, connection, reply)
    host.tell_watchers(connection, connection.nick, online=True)
    if rooms:
        # Imported here: the room commands import this module's limits.
        from chatroom.commands.rooms import show_room

        for room in rooms:
            reply.send("JOIN", room.channel, prefix=connection.source)
            show_room(reply, connection, room)
            if host.fanout is not None:
                host.fanout.member_joined(connection, room, reply)


def same_client(old: Any, new: Any) -> bool:
    """Whether C{old} and C{new} presented the same client key (a TLS client
    certificate).  Clients without a key (stock IRC clients) never match."""
    key = new.client_key
    return key is not None and old.client_key == key


def may_take_over(old: Any, new: Any) -> bool:
    """Whether C{new} takes the place of C{old}: the same client, and C{new}
    asked to resume its own session (L{TAKEOVER_CAPABILITY}).  A second
    program of the same user that did not ask gets C{433} and another
    nick; C{old} is left alone."""
    return same_client(old, new) and TAKEOVER_CAPABILITY in new.caps


def _welcome(host: Any, connection: Any, reply: Reply) -> None:
    name = host.server_name
    reply.numeric("001", "Welcome to chatroom, %s" % (connection.source,))
    reply.numeric("002", "Your host is %s, running chatroom %s" % (name, __version__))
    reply.numeric("003", "This server was created %s" % (server_time(host.created_ms),))
    reply.numeric(
        "004", name, "chatroom-" + __version__, "Biow", "Cbiklmnostv", "bklov"
    )
    send_isupport(host, reply)
    lusers(host, connection, reply, Message("LUSERS"))
    motd(host, connection, reply, Message("MOTD"))


def send_isupport(host: Any, reply: Reply) -> None:
    """The C{005} lines, up to 12 tokens each."""
    tokens = isupport_tokens(host.limits)
    for start in range(0, len(tokens), 12):
        reply.numeric(
            "005", *tokens[start : start + 12], "are supported by this server"
        )


def lusers(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """C{251}-C{255}, C{265}, C{266}: the host's users and rooms.

    Every user is C{+i} here, so all count as invisible; there are no
    server operators (C{252} says 0) and one server.
    """
    users = host.users()
    unknown = len(host.connections) - users
    reply.numeric("251", "There are 0 users and %d invisible on 1 servers" % (users,))
    opers = sum(1 for c in host.connections if c.registered and c.oper)
    reply.numeric("252", str(opers), "IRC Operators online")
    reply.numeric("253", str(max(0, unknown)), "unregistered connections")
    reply.numeric("254", str(len(host.rooms)), "channels formed")
    reply.numeric("255", "I have %d clients and 0 servers" % (users,))
    most = str(host.most_users)
    reply.numeric(
        "265", str(users), most, "Current local users %d, max %s" % (users, most)
    )
    reply.numeric(
        "266", str(users), most, "Current global users %d, max %s" % (users, most)
    )


def version(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """C{351 version server :comments}, then the C{005} lines (as Ergo)."""
    reply.numeric(
        "351", "chatroom-" + __version__, host.server_name, "chatroom rooms over IRC"
    )
    send_isupport(host, reply)


def time(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """C{391 server :time}, the host's clock in RFC 1123 form and UTC."""
    stamp = datetime.datetime.fromtimestamp(host.now_ms() // 1000, datetime.UTC)
    reply.numeric("391", host.server_name, stamp.strftime("%a, %d %b %Y %H:%M:%S UTC"))


def motd(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """Send the message of the day."""
    if not host.motd:
        reply.numeric("422", "MOTD File is missing")
        return
    reply.numeric("375", "- %s Message of the day - " % (host.server_name,))
    for text in host.motd:
        reply.numeric("372", "- " + text)
    reply.numeric("376", "End of /MOTD command.")


def pass_(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """C{PASS password} before registration: the password of the private
    rooms this client will join (RFC 2812 3.1.1)."""
    connection.password = message.params[0]


def ping(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """Answer with PONG and the same token."""
    if not message.params:
        reply.numeric("409", "No origin specified")
        return
    reply.send("PONG", host.server_name, message.params[0])


def pong(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """The client is alive (any input already proved that)."""


def quit(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """Leave: every room sees the QUIT with the client's reason.

    What this turn's earlier commands caused is stored and sent first (the
    turn's commit, L{chatroom.host.RoomHost.flush}, now rather than at the
    end of the turn), so a client that writes C{JOIN}, C{PRIVMSG} and
    C{QUIT} at once gets their replies before the C{ERROR}: once closing,
    a connection is sent nothing more.
    """
    host.flush()
    connection.close(quit_reason(message))


def quit_reason(message: Message) -> str:
    """What the rooms are told when a client leaves with C{message}, a
    C{QUIT}: C{Quit: reason}, or C{Quit}."""
    reason = message.params[0] if message.params else ""
    return "Quit: " + reason if reason else "Quit"
