# -*- test-case-name: tests.test_ircserver.RoomTests -*-
"""Messages: PRIVMSG, NOTICE and TAGMSG, to rooms and to users.

A message to a room is numbered and stored by the room; a message to a
user, and every TAGMSG, is relayed without a number and not stored.
"""

from __future__ import annotations

from typing import Any

from chatroom.commands.registration import TARGMAX
from chatroom.core.ircline import Message
from chatroom.core.names import casefold
from chatroom.core.room import Delivery
from chatroom.reply import Reply


def privmsg(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """Send a message to a room, or privately to one user."""
    _post(host, connection, reply, message)


def notice(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """Like PRIVMSG, but never answered with an error (RFC 2812 3.3.2)."""
    _post(host, connection, reply, message, quiet=True)


def tagmsg(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """Relay client-only tags (typing notices...) to a room or user; only
    recipients that negotiated message-tags are sent it."""
    _post(host, connection, reply, message, quiet="message-tags" not in connection.caps)


def _post(
    host: Any, connection: Any, reply: Reply, message: Message, quiet: bool = False
) -> None:
    command = message.command
    params = message.params
    if not params or not params[0]:
        if not quiet:
            reply.numeric("411", "No recipient given (%s)" % (command,))
        return
    if command == "TAGMSG":
        text = None
    elif len(params) < 2 or not params[1]:
        if not quiet:
            reply.numeric("412", "No text to send")
        return
    else:
        text = params[1]
    # Client-only tags are relayed only from a sender that negotiated
    # message-tags (IRCv3 message-tags).
    client_tags = {}
    if "message-tags" in connection.caps:
        if message.tags:
            client_tags = {k: v for k, v in message.tags.items() if k[:1] == "+"}
    elif command == "TAGMSG":
        return
    now_ms = connection.last_active_ms = host.now_ms()
    targets: list[str] = []
    if "," not in params[0]:
        targets.append(params[0])  # one target: the common case
    else:
        seen: set[str] = set()
        for target in params[0].split(","):
            folded = casefold(target)
            if target and folded not in seen:
                seen.add(folded)
                targets.append(target)
    for index, target in enumerate(targets):
        if index >= TARGMAX:
            # RFC 2812 407 ERR_TOOMANYTARGETS, once, for the first one
            # beyond the limit (as Ergo).
            if not quiet:
                reply.numeric(
                    "407",
                    target,
                    "Too many targets; message not "
                    "delivered to %s and later ones" % (target,),
                )
            break
        if target[:1] in "@+" and target[1:2] == "#":
            _post_to_status(
                host, connection, reply, command, target, text, client_tags, quiet
            )
        elif target.startswith("#"):
            _post_to_room(
                host,
                connection,
                reply,
                command,
                target,
                text,
                client_tags,
                quiet,
                now_ms,
            )
        else:
            _post_to_user(
                host, connection, reply, command, target, text, client_tags, quiet
            )


def _post_to_room(
    host: Any,
    connection: Any,
    reply: Reply,
    command: str,
    channel: str,
    text: str | None,
    client_tags: dict[str, str],
    quiet: bool,
    now_ms: int,
) -> None:
    room = host.find_room(channel)
    if room is None:
        if not quiet:
            reply.numeric("403", channel, "No such channel")
        return
    if not room.may_post(connection) or (text is not None and room.refuses_ctcp(text)):
        if not quiet:
            reply.numeric("404", room.channel, "Cannot send to channel")
        return
    if text is None:
        # TAGMSG: relayed, but neither numbered nor stored.
        host.relay(
            connection,
            command,
            (room.channel,),
            room.audience,
            reply,
            origin=connection,
            client_tags=client_tags,
            message=True,
        )
    else:
        host.submit(room.post(connection, command, text, now_ms, client_tags), reply)


def _post_to_status(
    host: Any,
    connection: Any,
    reply: Reply,
    command: str,
    target: str,
    text: str | None,
    client_tags: dict[str, str],
    quiet: bool,
) -> None:
    """C{PRIVMSG @#room} (operators) or C{+#room} (voiced and operators):
    relayed to those members only, not numbered, not stored
    (C{STATUSMSG=@+})."""
    room = host.find_room(target[1:])
    if room is None:
        if not quiet:
            reply.numeric("403", target[1:], "No such channel")
        return
    if not room.may_post(connection):
        if not quiet:
            reply.numeric("404", room.channel, "Cannot send to channel")
        return
    audience = tuple(
        member
        for member in room.members
        if room.is_operator(member)
        or member is connection
        or (target[0] == "+" and member in room.voiced)
    )
    if connection not in audience:
        audience = (*audience, connection)
    params = (target[0] + room.channel,) + (() if text is None else (text,))
    host.relay(
        connection,
        command,
        params,
        audience,
        reply,
        origin=connection,
        client_tags=client_tags,
        message=True,
    )


def _post_to_user(
    host: Any,
    connection: Any,
    reply: Reply,
    command: str,
    nick: str,
    text: str | None,
    client_tags: dict[str, str],
    quiet: bool,
) -> None:
    other = host.nick_owner(nick)
    if other is None or not other.registered:
        if not quiet:
            reply.numeric("401", nick, "No such nick/channel")
        return
    params = (other.nick,) if text is None else (other.nick, text)
    # Private messages are relayed, not numbered and not stored; they
    # carry a msgid all the same (IRCv3 message-ids).
    if other is connection:
        # A message to oneself is delivered, and echoed too with
        # echo-message (as Ergo): the same event, twice.
        delivery = host.relay(
            connection,
            command,
            params,
            (connection,),
            reply,
            client_tags=client_tags,
            message=True,
        )
        if connection.echo:
            host.submit(
                Delivery(delivery.event, (connection,), origin=connection), reply
            )
    else:
        host.relay(
            connection,
            command,
            params,
            (other, connection),
            reply,
            origin=connection,
            client_tags=client_tags,
            message=True,
        )
    if command == "PRIVMSG" and other.away is not None:
        reply.numeric("301", other.nick, other.away)
