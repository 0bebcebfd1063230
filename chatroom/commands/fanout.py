# -*- test-case-name: tests.test_fanout_host -*-
"""FANOUT: a member's requests about multicast delivery (START, STOP, SYNC,
REPAIR), on connections that took the vendor capability
(C{docs/protocol-fanout.rst}, "Lines over TLS")."""

from __future__ import annotations

from typing import Any

from chatroom.core.errors import ParseError
from chatroom.core.ircline import Message
from chatroom.reply import Reply
from chatroom.wellknown import FANOUT_CAPABILITY


def fanout(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """Pass a member's request to the room's fan-out sender."""
    if host.fanout is None or FANOUT_CAPABILITY not in connection.caps:
        reply.numeric("421", "FANOUT", "Unknown command")
        return
    # Imported here: a host without --fanout never loads fan-out.
    from chatroom.core.fanout import MemberRequest

    try:
        request = MemberRequest.from_params(message.params)
    except ParseError as error:
        host.count("fanout-bad-requests")
        reply.send("FAIL", "FANOUT", "INVALID_PARAMS", *message.params[:1], str(error))
        return
    channel = "#" + request.room
    room = host.find_room(channel)
    if (
        room is None
        or connection not in room
        or not host.fanout.request(connection, room, request)
    ):
        reply.send(
            "FAIL",
            "FANOUT",
            "NOT_AVAILABLE",
            channel,
            "This room offers you no multicast delivery",
        )
