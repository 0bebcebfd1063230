# -*- test-case-name: tests.test_ircserver.RegistrationTests -*-
"""Registration and connection upkeep: CAP, NICK, USER, PING, PONG, QUIT, MOTD."""

from __future__ import annotations

import re
from typing import Any

from chatroom import __version__
from chatroom.core.ircline import MAX_IRC_BYTES, Message, server_time
from chatroom.reply import Reply

#: The capabilities this host offers (IRCv3 names).
CAPABILITIES = ("batch", "draft/chathistory", "draft/event-playback",
                "echo-message", "labeled-response", "message-tags",
                "server-time")

NICKLEN = 30
TOPICLEN = 390
TARGMAX = 4

# RFC 2812 2.3.1: nickname = ( letter / special ) *8( letter / digit /
# special / "-" ); we allow NICKLEN characters.
_NICK = re.compile(r"^[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]{0,%d}$"
                   % (NICKLEN - 1,))


def isupport_tokens(limits: Any) -> list[str]:
    """The C{005 RPL_ISUPPORT} tokens, as the protocol document lists them."""
    return [
        "CASEMAPPING=ascii", "CHANTYPES=#",
        "CHANNELLEN=%d" % (limits.room_name_length + 1,),
        "NICKLEN=%d" % (NICKLEN,), "TOPICLEN=%d" % (TOPICLEN,),
        "PREFIX=(o)@", "CHANMODES=,k,,int", "NETWORK=chatroom",
        "TARGMAX=PRIVMSG:%d,NOTICE:%d,TAGMSG:%d,JOIN:,PART:" % (
            TARGMAX, TARGMAX, TARGMAX),
        "CHATHISTORY=%d" % (limits.history_limit,),
        "MSGREFTYPES=msgid,timestamp", "UTF8ONLY", "LINELEN=%d" % (MAX_IRC_BYTES,),
    ]


def cap(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """CAP LS / LIST / REQ / END (IRCv3 capability negotiation, 302)."""
    params = message.params
    sub = params[0].upper() if params else ""
    target = connection.nick or "*"
    if sub == "LS":
        if not connection.registered:
            connection.cap_negotiating = True
        reply.send("CAP", target, "LS", " ".join(CAPABILITIES))
    elif sub == "LIST":
        reply.send("CAP", target, "LIST", " ".join(sorted(connection.caps)))
    elif sub == "REQ" and len(params) > 1:
        if not connection.registered:
            connection.cap_negotiating = True
        wanted = params[1].split()
        if all(c.lstrip("-") in CAPABILITIES for c in wanted):
            caps = set(connection.caps)
            for name in wanted:
                if name.startswith("-"):
                    caps.discard(name[1:])
                else:
                    caps.add(name)
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
    if (owner is not None and owner is not connection
            and not (is_ghost_of(owner, connection) and not connection.registered)):
        reply.numeric("433", new, "Nickname is already in use")
        return
    if connection.nick == new:
        return
    if not connection.registered:
        connection.nick = new
        try_register(host, connection, reply)
        return
    host.change_nick(connection, new, reply)
    connection.nick = new
    connection.update_source()


def user(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """Give the user name and real name."""
    connection.user = "~" + message.params[0][:10]
    connection.realname = message.params[3]
    try_register(host, connection, reply)


def try_register(host: Any, connection: Any, reply: Reply) -> None:
    """Register C{connection} once it has a nick and a user and CAP
    negotiation (if any) ended; welcome it."""
    if (connection.registered or connection.cap_negotiating
            or connection.nick is None or connection.user is None):
        return
    owner = host.nick_owner(connection.nick)
    rooms = []
    if owner is not None and owner is not connection:
        if not is_ghost_of(owner, connection):
            reply.numeric("433", connection.nick, "Nickname is already in use")
            connection.nick = None
            return
        rooms = host.take_over(owner, connection, GHOST_REASON)
    host.claim_nick(connection, None, connection.nick)
    connection.update_source()
    connection.register()
    _welcome(host, connection, reply)
    if rooms:
        # Imported here: the room commands import this module's limits.
        from chatroom.commands.rooms import show_room
        for room in rooms:
            reply.send("JOIN", room.channel, prefix=connection.source)
            show_room(reply, room)


#: What a connection replaced by its own client's new connection is told.
GHOST_REASON = "Replaced by a new connection with the same client key"


def is_ghost_of(old: Any, new: Any) -> bool:
    """Whether C{old} is an earlier connection of the client on C{new}: both
    presented the same client key (a TLS client certificate).  Clients
    without a key (stock IRC clients) never match."""
    key = new.client_key
    return key is not None and old.client_key == key


def _welcome(host: Any, connection: Any, reply: Reply) -> None:
    name = host.server_name
    reply.numeric("001", "Welcome to chatroom, %s" % (connection.source,))
    reply.numeric("002", "Your host is %s, running chatroom %s" % (
        name, __version__))
    reply.numeric("003", "This server was created %s" % (
        server_time(host.created_ms),))
    reply.numeric("004", name, "chatroom-" + __version__, "i", "iknot", "ko")
    tokens = isupport_tokens(host.limits)
    for start in range(0, len(tokens), 12):
        reply.numeric("005", *tokens[start:start + 12],
                      "are supported by this server")
    motd(host, connection, reply, Message("MOTD"))


def motd(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """Send the message of the day."""
    if not host.motd:
        reply.numeric("422", "MOTD File is missing")
        return
    reply.numeric("375", "- %s Message of the day - " % (host.server_name,))
    for text in host.motd:
        reply.numeric("372", "- " + text)
    reply.numeric("376", "End of /MOTD command.")


def ping(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """Answer with PONG and the same token."""
    if not message.params:
        reply.numeric("409", "No origin specified")
        return
    reply.send("PONG", host.server_name, message.params[0])


def pong(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """The client is alive (any input already proved that)."""


def quit(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """Leave: every room sees the QUIT with the client's reason."""
    reason = message.params[0] if message.params else ""
    connection.close("Quit: " + reason if reason else "Quit")
