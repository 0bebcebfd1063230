# -*- test-case-name: tests.test_history -*-
"""CHATHISTORY (IRCv3 draft/chathistory): LATEST, BEFORE, AFTER, AROUND,
BETWEEN and TARGETS.  Range selection is L{chatroom.chathistory}'s."""

from __future__ import annotations

from typing import Any

from chatroom.chathistory import HistoryRequestError, parse_request, select_events
from chatroom.core.ircline import Message, format_line
from chatroom.core.room import Event
from chatroom.reply import Reply


def chathistory(host: Any, connection: Any, reply: Reply, message: Message) -> None:
    """Answer a history request with a C{chathistory} batch, or C{FAIL}."""
    params = message.params
    if params and params[0].upper() == "TARGETS":
        send_batch(host, connection, reply, "draft/chathistory-targets", (), [])
        return
    try:
        request = parse_request(params, host.limits.history_limit)
        room = host.find_room(request.channel)
        if room is None or (
            connection not in room
            and (room.is_secret or "i" in room.modes or room.channel_key)
        ):
            # A non-member gets nothing of a +i, +k, +s or private room: to
            # it the room does not exist (as Ergo answers).
            raise HistoryRequestError(
                "INVALID_TARGET", request.subcommand, request.channel, "No such channel"
            )
        events = select_events(
            host.store, room, request, "draft/event-playback" not in connection.caps
        )
    except HistoryRequestError as e:
        reply.send("FAIL", "CHATHISTORY", e.code, *e.params)
        return
    send_batch(host, connection, reply, "chathistory", (room.channel,), events)


def send_batch(
    host: Any,
    connection: Any,
    reply: Reply,
    kind: str,
    params: tuple[str, ...],
    events: list[Event],
) -> None:
    """Add history events to C{reply}, in a batch when the client takes
    batches."""
    variant = connection.variant
    prefix = host.server_name
    if "batch" not in connection.caps:
        reply.extend([event.line(variant) for event in events])
        return
    ref = connection.new_batch_id()
    lines = [format_line("BATCH", "+" + ref, kind, *params, prefix=prefix)]
    for event in events:
        tags = event.tags_for(variant)
        tags["batch"] = ref
        lines.append(
            format_line(
                event.command,
                *event.params_for(variant),
                prefix=event.source,
                tags=tags,
            )
        )
    lines.append(format_line("BATCH", "-" + ref, prefix=prefix))
    reply.extend(lines)
