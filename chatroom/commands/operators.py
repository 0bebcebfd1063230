# -*- test-case-name: tests.test_operators -*-
"""Server operators and server queries: OPER, KILL, WALLOPS, INFO, HELP, LINKS.

A node's operator removes an abuser without restarting the host: the
credentials come from the host's configuration (C{--oper-file}), and the
status belongs to the connection that gave them, never to a nick.
Numerics as RFC 2812 3.1.4, 3.7.1, 4.7 and the Modern IRC document.
"""

from __future__ import annotations

import hmac
from typing import Any

from chatroom import __version__
from chatroom.core.ircline import Message
from chatroom.reply import Reply


def _not_operator(connection: Any, reply: Reply) -> bool:
    """Answer C{481} unless C{connection} is a server operator."""
    if connection.oper:
        return False
    reply.numeric("481", "Permission Denied- You're not an IRC operator")
    return True


def oper(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """C{OPER name password}: C{381} and C{MODE nick +o}, or C{464}.

    An unknown name and a wrong password get the same answer, so names
    cannot be guessed one at a time; every failure is counted.
    """
    name, password = message.params[:2]
    expected = host.operators.get(name)
    # compare_digest on bytes of both, so timing does not tell how much
    # of the password was right.
    if expected is None or not hmac.compare_digest(
        password.encode("utf-8"), expected.encode("utf-8")
    ):
        host.count("oper-failures")
        host.log.warn(
            "Failed OPER as {name!r} from {address}",
            name=name,
            address=connection.address,
        )
        reply.numeric("464", "Password incorrect")
        return
    host.log.info(
        "{source} is now a server operator ({name})",
        source=connection.source,
        name=name,
    )
    if not connection.oper:
        connection.oper = True
        reply.send("MODE", connection.nick or "*", "+o", prefix=connection.source)
    reply.numeric("381", "You are now an IRC operator")


def kill(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """C{KILL nick [:reason]}: disconnect a user (operators only, C{481});
    its rooms see it quit with C{Killed (oper (reason))}."""
    if _not_operator(connection, reply):
        return
    nick = message.params[0]
    target = host.nick_owner(nick)
    if target is None or not target.registered:
        reply.numeric("401", nick, "No such nick/channel")
        return
    reason = message.params[1] if len(message.params) > 1 else "no reason"
    host.count("kills")
    host.log.info(
        "{oper} killed {target}: {reason}",
        oper=connection.source,
        target=target.source,
        reason=reason,
    )
    target.close("Killed (%s (%s))" % (connection.nick, reason))


def wallops(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """C{WALLOPS :text} (operators only, C{481}): sent to every user with
    user mode C{+w}, the sender included when it has it."""
    if _not_operator(connection, reply):
        return
    audience = tuple(
        member for member in host.connections if member.registered and member.wallops
    )
    host.relay(connection, "WALLOPS", (message.params[0],), audience, reply)


def info(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """C{INFO}: a few C{371} lines about this host, then C{374}."""
    for line in (
        "chatroom %s: server-free chat rooms" % (__version__,),
        "rooms are announced on the local network and hosted here",
        "history is kept in SQLite; every event is stored before it is shown",
    ):
        reply.numeric("371", line)
    reply.numeric("374", "End of /INFO list")


def help_(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """C{HELP [subject]} (also C{HELPOP}): C{704}, C{705} lines, C{706}; the
    text is the first line of each command's documentation here.  An
    unknown subject gets C{524}."""
    from chatroom.commands import COMMANDS

    if not message.params:
        subject = "index"
        text = [
            "Commands: " + " ".join(sorted(COMMANDS)[:40]),
            " ".join(sorted(COMMANDS)[40:]) or "HELP <command> for one",
        ]
    else:
        subject = message.params[0]
        command = COMMANDS.get(subject.upper())
        if command is None:
            reply.numeric("524", subject, "No help available on this topic")
            return
        doc = (command.handler.__doc__ or subject.upper()).strip()
        text = [" ".join(doc.split("\n\n")[0].split())]
    reply.numeric("704", subject, "** Help on %s **" % (subject,))
    for line in text:
        reply.numeric("705", subject, line)
    reply.numeric("706", subject, "End of /HELP")


def links(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """C{LINKS}: one host, no links: only C{365} (as servers that keep
    their links private answer)."""
    reply.numeric("365", "*", "End of /LINKS list")
