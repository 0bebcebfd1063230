# -*- test-case-name: tests.test_ircserver -*-
"""The command table: every IRC command the host answers, in one place.

Each entry names the handler, the fewest parameters the command needs and
whether it may be sent before registration (Ergo's C{irc/commands.go}).
L{run} does the checks every command shares, once: registration (C{451}),
parameters (C{461}), the reply object that owns the label, and a last
guard so that a bug answers C{FAIL ... INTERNAL_ERROR} instead of taking
the connection down.  Handlers are grouped by topic in this package and
take C{(host, connection, reply, message)}.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.logger import Logger

from chatroom.commands import (
    fanout,
    history,
    messages,
    operators,
    registration,
    rooms,
    users,
)
from chatroom.core.ircline import Message
from chatroom.reply import MAX_LABEL_BYTES, Reply

log = Logger()

Handler = Callable[[Any, Any, Reply, Message], None]


@attrs.frozen
class Command:
    """One row of the table.

    @ivar handler: called as C{handler(host, connection, reply, message)}.
    @ivar min_params: fewer parameters than this are answered with C{461}.
    @ivar before_registration: whether an unregistered client may send it.
    @ivar after_registration: whether a registered client may send it
        (C{USER} may not: C{462}).
    """

    handler: Handler
    min_params: int = 0
    before_registration: bool = False
    after_registration: bool = True


COMMANDS: dict[str, Command] = {
    # Registration and connection upkeep (registration.py)
    "CAP": Command(registration.cap, 0, before_registration=True),
    "PASS": Command(
        registration.pass_, 1, before_registration=True, after_registration=False
    ),
    "NICK": Command(registration.nick, 0, before_registration=True),
    "USER": Command(
        registration.user, 4, before_registration=True, after_registration=False
    ),
    "PING": Command(registration.ping, 0, before_registration=True),
    "PONG": Command(registration.pong, 0, before_registration=True),
    "QUIT": Command(registration.quit, 0, before_registration=True),
    "MOTD": Command(registration.motd),
    "LUSERS": Command(registration.lusers),
    "VERSION": Command(registration.version),
    "TIME": Command(registration.time),
    # Rooms (rooms.py)
    "JOIN": Command(rooms.join, 1),
    "PART": Command(rooms.part, 1),
    "NAMES": Command(rooms.names),
    "TOPIC": Command(rooms.topic, 1),
    "WHO": Command(rooms.who),
    "MODE": Command(rooms.mode, 1),
    "KICK": Command(rooms.kick, 2),
    "INVITE": Command(rooms.invite),
    "LIST": Command(rooms.list_rooms),
    # Users (users.py)
    "WHOIS": Command(users.whois, 1),
    "WHOWAS": Command(users.whowas, 1),
    "ISON": Command(users.ison, 1),
    "USERHOST": Command(users.userhost, 1),
    "AWAY": Command(users.away),
    "SETNAME": Command(users.setname, 1),
    "MONITOR": Command(users.monitor, 1),
    "MARKREAD": Command(users.markread),
    # Messages (messages.py)
    "PRIVMSG": Command(messages.privmsg),
    "NOTICE": Command(messages.notice),
    "TAGMSG": Command(messages.tagmsg),
    # Server operators (operators.py)
    "OPER": Command(operators.oper, 2),
    "KILL": Command(operators.kill, 1),
    "WALLOPS": Command(operators.wallops, 1),
    "INFO": Command(operators.info),
    "HELP": Command(operators.help_),
    "HELPOP": Command(operators.help_),
    "LINKS": Command(operators.links),
    # History (history.py)
    "CHATHISTORY": Command(history.chathistory),
    # Multicast delivery (fanout.py)
    "FANOUT": Command(fanout.fanout),
}


def run(host: Any, connection: Any, message: Message) -> None:
    """Run C{message} from C{connection}: check, dispatch, answer."""
    name = message.command
    label = None
    if "labeled-response" in connection.caps:
        label = message.tags.get("label") or None
    if label is not None and len(label.encode("utf-8")) > MAX_LABEL_BYTES:
        # IRCv3 labeled-response: a label is at most 64 bytes.  The
        # command is not run, so that its answer cannot go unlabelled.
        host.count("labels-too-long")
        refusal = Reply(connection, None)
        refusal.send(
            "FAIL",
            name,
            "INVALID_LABEL",
            "Labels are at most %d bytes" % (MAX_LABEL_BYTES,),
        )
        refusal.close()
        return
    reply = Reply(connection, label)
    command = COMMANDS.get(name)
    registered = connection.registered
    if not registered and (command is None or not command.before_registration):
        reply.numeric("451", "You have not registered")
    elif command is None:
        reply.numeric("421", name, "Unknown command")
    elif registered and not command.after_registration:
        reply.numeric("462", "You may not reregister")
    elif len(message.params) < command.min_params:
        reply.numeric("461", name, "Not enough parameters")
    else:
        try:
            command.handler(host, connection, reply, message)
        except Exception:
            # A bug must not take the connection or the host down; it is
            # logged once and the client told.
            log.failure("Error handling {command}", command=name)
            host.count("internal-errors")
            reply.send("FAIL", name, "INTERNAL_ERROR", "Internal error")
    reply.close()
