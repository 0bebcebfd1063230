# -*- test-case-name: tests.test_ircserver -*-
"""The room protocol: one IRC client connection to a host.

    client                                  host
    CAP LS 302 ------------------------->
               <------------------------- CAP * LS :message-tags server-time ...
    NICK, USER, CAP END ---------------->
               <------------------------- 001 .. 005, MOTD
    JOIN #lobby ------------------------>  Room.join -> event (seq n)
               <------------------------- @msgid=lobby:n JOIN #lobby, 332, 353, 366
    PRIVMSG #lobby :hi ----------------->  Room.post -> event (seq n+1)
               <------------------------- (every member, in order, after commit)

A connection frames bytes into bounded lines, parses them, calls the room or
host method for the command and writes what comes back.  Room state lives in
L{chatroom.core.room.Room} and L{chatroom.host.RoomHost}, never here; what a
connection keeps is its own registration, capabilities, flood budget and
output bookkeeping.  The wire format is documented in C{docs/protocol-room.rst}.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet import defer, interfaces, protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatroom import __version__
from chatroom.chathistory import HistoryRequestError, parse_request, select_events
from chatroom.core.ircline import (
    MAX_IRC_BYTES,
    InvalidUTF8,
    LineBuffer,
    LineTooLong,
    Message,
    ParseError,
    RecvQExceeded,
    add_tags,
    format_line,
    parse_line,
    server_time,
)
from chatroom.core.room import (
    MESSAGE_TAGS,
    SERVER_TIME,
    Event,
    MissingModeParameter,
    NotAMember,
    NotOperator,
    Room,
    UnknownMode,
    parse_mode_changes,
)
from chatroom.core.names import casefold, valid_room_name
from chatroom.core.tokenbucket import TokenBucket
from chatroom.host import RoomHost
from chatroom.interfaces import IRoomMember

#: The capabilities this host offers (IRCv3 names).
CAPABILITIES = ("batch", "draft/chathistory", "draft/event-playback",
                "echo-message", "labeled-response", "message-tags",
                "server-time")

NICKLEN = 30
TOPICLEN = 390
TARGMAX = 4
#: Seconds a closed connection may take to go away before it is aborted.
CLOSE_GRACE = 10.0

# RFC 2812 2.3.1: nickname = ( letter / special ) *8( letter / digit /
# special / "-" ); we allow NICKLEN characters.
_NICK = re.compile(r"^[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]{0,%d}$"
                   % (NICKLEN - 1,))

_UNREGISTERED_COMMANDS = frozenset({"CAP", "NICK", "USER", "PING", "PONG", "QUIT"})


def isupport_tokens(limits) -> list[str]:
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


@implementer(IRoomMember, interfaces.IHandshakeListener, interfaces.IPushProducer)
class IRCConnection(protocol.Protocol):
    """One client: framing, limits, registration and commands.

    @ivar nick: the nickname, C{None} until the client sent a valid one.
    @ivar rooms: the rooms the client is in, by room key.
    """

    log = Logger()

    def __init__(self, host: RoomHost) -> None:
        self.host = host
        self.limits = host.limits
        self.clock = host.clock
        self.nick: str | None = None
        self.user: str | None = None
        self.realname = ""
        self.address = "unknown"
        self.source = "*"
        self.registered = False
        self.caps: set[str] = set()
        self.variant = 0
        self.echo = False
        self.rooms: dict[str, Room] = {}
        self._admitted = False
        self._closed = False
        self._cap_negotiating = False
        self._lines = LineBuffer()
        self._bucket = TokenBucket(self.limits.flood_burst, self.limits.flood_rate)
        self._delayed: list[bytes] = []
        self._delayed_bytes = 0
        self._drain_call: Any = None
        self._pre_registration = [0, 0]  # bytes, lines
        self._deadline: Any = None
        self._last_input = 0.0
        self._pinged = False
        self._held: list[bytes] | None = None
        self._held_bytes = 0
        self._batch_ids = 0
        self._label: str | None = None
        self._label_lines: list[bytes] | None = None
        self._awaiting_labels: dict[Event, tuple[str, list[bytes]]] = {}
        self._quit_reason = "Connection closed"
        self._opened_rooms: TokenBucket | None = None
        self._lost_waiters: list[defer.Deferred] = []

    # Connection lifetime

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.address = getattr(peer, "host", None) or "local"
        refusal = self.host.admit(self.address)
        if refusal is not None:
            self._closed = True
            self.transport.write(format_line("ERROR", refusal))
            self.transport.loseConnection()
            return
        self._admitted = True
        self.host.connections.add(self)
        self._last_input = self.clock.seconds()
        _set_no_delay(self.transport)
        self.transport.registerProducer(self, True)
        if interfaces.ISSLTransport.providedBy(self.transport):
            self._set_deadline(self.limits.handshake_timeout, self._handshake_timeout)
        else:
            self.handshakeCompleted()

    def handshakeCompleted(self) -> None:
        """TLS is up (or there is no TLS): registration time starts now."""
        if not self.registered:
            self._set_deadline(self.limits.registration_timeout,
                               self._registration_timeout)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self._closed = True
        self._cancel_timers()
        waiters, self._lost_waiters = self._lost_waiters, []
        if self._admitted:
            self._admitted = False
            self.host.connections.discard(self)
            self.host.release(self.address)
            self.host.member_left(self, self._quit_reason)
        for waiter in waiters:
            waiter.callback(None)

    def when_lost(self) -> defer.Deferred:
        """A Deferred that fires once the connection is closed."""
        waiter: defer.Deferred[None] = defer.Deferred()
        self._lost_waiters.append(waiter)
        return waiter

    def abort(self) -> None:
        """Drop the connection now, without waiting for its output."""
        self._closed = True
        self.transport.abortConnection()

    def _cancel_timers(self) -> None:
        for call in (self._deadline, self._drain_call):
            if call is not None and call.active():
                call.cancel()
        self._deadline = self._drain_call = None

    def _set_deadline(self, delay: float, action) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = self.clock.callLater(delay, action)

    def _handshake_timeout(self) -> None:
        self.host.count("handshake-timeouts")
        self.transport.abortConnection()

    def _registration_timeout(self) -> None:
        self.host.count("registration-timeouts")
        self.close("Registration timeout")

    def _idle_check(self) -> None:
        silence = self.clock.seconds() - self._last_input
        if silence >= self.limits.close_after:
            self.close("Ping timeout: %d seconds" % (int(silence),))
            return
        if silence >= self.limits.ping_after:
            if not self._pinged:
                self._pinged = True
                self.send("PING", self.host.server_name)
            self._set_deadline(self.limits.close_after - silence, self._idle_check)
        else:
            self._set_deadline(self.limits.ping_after - silence, self._idle_check)

    def close(self, reason: str) -> None:
        """Say C{ERROR :reason}, leave every room with that reason, close."""
        if self._closed:
            return
        self._quit_reason = reason
        self._write(format_line("ERROR", "Closing link: %s (%s)" % (
            self.address, reason)))
        self._closed = True
        self.transport.loseConnection()
        # A TLS close waits for the peer's close_notify; a peer that never
        # sends it must not keep its slot, so it is cut off after a grace.
        self._set_deadline(CLOSE_GRACE, self.transport.abortConnection)

    def disconnect(self, reason: str) -> None:
        """L{IRoomMember.disconnect}: close the connection."""
        self.close(reason)

    def _abort(self, reason: str) -> None:
        """Close at once, dropping what is queued (the peer is misbehaving)."""
        if self._closed:
            return
        self._quit_reason = reason
        self._closed = True
        self.transport.write(format_line("ERROR", reason))
        self.transport.abortConnection()

    # Output

    def _write(self, data: bytes) -> None:
        if self._held is not None:
            self._held.append(data)
            self._held_bytes += len(data)
            if self._held_bytes > self.limits.sendq_hard:
                self.host.count("sendq-exceeded")
                self._held = None
                self._quit_reason = "SendQ exceeded"
                self._closed = True
                self.transport.abortConnection()
            return
        self.transport.write(data)

    def pauseProducing(self) -> None:
        """The transport is full: hold output and stop reading this client."""
        if self._held is None:
            self._held = []
            self._held_bytes = 0
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        """The transport drained: send what was held, read again."""
        held, self._held = self._held, None
        if held:
            self.transport.write(b"".join(held))
        if not self._delayed:
            self.transport.resumeProducing()

    def stopProducing(self) -> None:
        """The transport is going away; nothing to do."""

    def deliver(self, data: bytes) -> None:
        """L{IRoomMember.deliver}: room events, already formatted."""
        if not self._closed:
            self._write(data)

    def labeled_echo(self, event: Event, line: bytes) -> None:
        """The line showing this client its own labelled event."""
        pending = self._awaiting_labels.get(event)
        if pending is not None:
            pending[1].append(line)
        else:
            self.deliver(line)

    def event_committed(self, event: Event) -> None:
        """An event this client caused is stored and delivered: follow up."""
        if self._closed:
            return
        pending = self._awaiting_labels.pop(event, None)
        if pending is not None:
            self._label, self._label_lines = pending
        if event.command == "JOIN":
            room = self.host.rooms.get(event.room or "")
            if room is not None and self in room:
                self._send_topic(room, on_join=True)
                self._send_names(room)
        if pending is not None:
            self._finish_label()

    def send(self, command: str, *params: str, prefix: str | None = None,
             tags: dict[str, str] | None = None) -> None:
        """Send one line, from the server unless C{prefix} says otherwise."""
        line = format_line(command, *params,
                           prefix=prefix or self.host.server_name, tags=tags)
        if self._label_lines is not None:
            self._label_lines.append(line)
        elif not self._closed:
            self._write(line)

    def reply(self, numeric: str, *params: str) -> None:
        """Send a numeric reply addressed to this client."""
        self.send(numeric, self.nick or "*", *params)

    def _new_batch_id(self) -> str:
        self._batch_ids += 1
        return "b%d" % (self._batch_ids,)

    def _finish_label(self) -> None:
        """Send the response to a labelled command (IRCv3 labeled-response)."""
        label, lines = self._label, self._label_lines
        self._label = self._label_lines = None
        if label is None or lines is None:
            return
        tag = {"label": label}
        if not lines:
            self.send("ACK", tags=tag)
        elif len(lines) == 1:
            self._write(add_tags(lines[0], tag))
        elif "batch" not in self.caps:
            self._write(b"".join(lines))
        else:
            ref = self._new_batch_id()
            self._write(
                add_tags(format_line("BATCH", "+" + ref, "labeled-response",
                                     prefix=self.host.server_name), tag) +
                b"".join(add_tags(line, {"batch": ref}) for line in lines) +
                format_line("BATCH", "-" + ref, prefix=self.host.server_name))

    # Input

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
        self._last_input = self.clock.seconds()
        self._pinged = False
        try:
            lines = self._lines.feed(data)
        except RecvQExceeded:
            self.host.count("recvq-exceeded")
            self._abort("RecvQ exceeded")
            return
        if not self.registered:
            counts = self._pre_registration
            counts[0] += len(data)
            counts[1] += len(lines)
            if (counts[0] > self.limits.pre_registration_bytes or
                    counts[1] > self.limits.pre_registration_lines):
                self.host.count("pre-registration-flood")
                self.host.throttle(self.address)
                self._abort("Too much input before registration")
                return
        for line in lines:
            if self._closed:
                return
            if self._delayed or not self._may_run(line):
                self._delay(line)
            else:
                self.lineReceived(line)

    def _may_run(self, line: bytes) -> bool:
        if self.limits.flood_rate <= 0:
            return True
        if line[:4].upper() == b"PONG":
            # Answering our PING must never be delayed into a ping timeout.
            return True
        return self._bucket.take(self.clock.seconds())

    def _delay(self, line: bytes) -> None:
        """Flood control: keep the line for later, stop reading meanwhile."""
        self._delayed.append(line)
        self._delayed_bytes += len(line)
        if self._delayed_bytes > self.limits.flood_max_delayed:
            self.host.count("excess-flood")
            self._abort("Excess Flood")
            return
        if self._drain_call is None:
            self.host.count("flood-delayed")
            self.transport.pauseProducing()
            self._schedule_drain()

    def _schedule_drain(self) -> None:
        wait = self._bucket.wait(self.clock.seconds())
        self._drain_call = self.clock.callLater(wait, self._drain)

    def _drain(self) -> None:
        self._drain_call = None
        while self._delayed and not self._closed:
            if not self._bucket.take(self.clock.seconds()):
                self._schedule_drain()
                return
            line = self._delayed.pop(0)
            self._delayed_bytes -= len(line)
            self.lineReceived(line)
        if not self._closed and self._held is None:
            self.transport.resumeProducing()

    def lineReceived(self, line: bytes) -> None:
        """Parse one line and run its command; bad input is answered."""
        try:
            message = parse_line(line)
        except LineTooLong:
            self.host.count("input-too-long")
            self.reply("417", "Input line was too long")
            return
        except InvalidUTF8:
            self.host.count("invalid-utf8")
            self.send("FAIL", "*", "INVALID_UTF8",
                      "Message rejected, your client must send UTF-8")
            return
        except ParseError:
            self.host.count("malformed-lines")
            return
        self._run(message)

    def _run(self, message: Message) -> None:
        command = message.command
        if not self.registered and command not in _UNREGISTERED_COMMANDS:
            self.reply("451", "You have not registered")
            return
        method = getattr(self, "irc_" + command, None)
        if method is None:
            self.reply("421", command, "Unknown command")
            return
        label = message.tags.get("label")
        if label and "labeled-response" in self.caps:
            self._label, self._label_lines = label, []
        try:
            method(message)
        except Exception:
            # A bug must not take the connection or the host down; it is
            # logged once and the client told.
            self.log.failure("Error handling {command}", command=command)
            self.host.count("internal-errors")
            self.send("FAIL", command, "INTERNAL_ERROR", "Internal error")
        if self._label_lines is not None:
            self._finish_label()

    def _submit(self, event: Event) -> None:
        """Hand a room event to the host; a pending label waits for it."""
        if self._label_lines is not None:
            event.label = self._label
            self._awaiting_labels[event] = (self._label, self._label_lines)
            self._label = self._label_lines = None
        self.host.submit(event)

    # Registration

    def irc_CAP(self, message: Message) -> None:
        """CAP LS / LIST / REQ / END (IRCv3 capability negotiation, 302)."""
        params = message.params
        sub = params[0].upper() if params else ""
        target = self.nick or "*"
        if sub == "LS":
            if not self.registered:
                self._cap_negotiating = True
            self.send("CAP", target, "LS", " ".join(CAPABILITIES))
        elif sub == "LIST":
            self.send("CAP", target, "LIST", " ".join(sorted(self.caps)))
        elif sub == "REQ" and len(params) > 1:
            if not self.registered:
                self._cap_negotiating = True
            wanted = params[1].split()
            if all(c.lstrip("-") in CAPABILITIES for c in wanted):
                for cap in wanted:
                    if cap.startswith("-"):
                        self.caps.discard(cap[1:])
                    else:
                        self.caps.add(cap)
                self._caps_changed()
                self.send("CAP", target, "ACK", params[1])
            else:
                self.send("CAP", target, "NAK", params[1])
        elif sub == "END":
            if self._cap_negotiating:
                self._cap_negotiating = False
                self._try_register()
        else:
            self.reply("410", sub or "*", "Invalid CAP command")

    def _caps_changed(self) -> None:
        variant = 0
        if "message-tags" in self.caps:
            variant |= MESSAGE_TAGS
        if "server-time" in self.caps:
            variant |= SERVER_TIME
        self.variant = variant
        self.echo = "echo-message" in self.caps

    def irc_NICK(self, message: Message) -> None:
        """Choose or change the nickname."""
        if not message.params or not message.params[0]:
            self.reply("431", "No nickname given")
            return
        nick = message.params[0]
        if not _NICK.match(nick):
            self.reply("432", nick, "Erroneous nickname")
            return
        owner = self.host.nick_owner(nick)
        if owner is not None and owner is not self:
            self.reply("433", nick, "Nickname is already in use")
            return
        old = self.nick
        if old == nick:
            return
        if not self.registered:
            self.nick = nick
            self._try_register()
            return
        event = Event(room=None, seq=None, time_ms=self.host.now_ms(),
                      command="NICK", source=self.source, params=(nick,),
                      audience=self.host.shared_audience(self), origin=self)
        self.host.claim_nick(self, old, nick)
        self.nick = nick
        self._update_source()
        self._submit(event)

    def _update_source(self) -> None:
        self.source = "%s!%s@%s" % (self.nick, self.user, self.address)

    def irc_USER(self, message: Message) -> None:
        """Give the user name and real name."""
        if self.registered:
            self.reply("462", "You may not reregister")
            return
        if len(message.params) < 4:
            self.reply("461", "USER", "Not enough parameters")
            return
        self.user = "~" + message.params[0][:10]
        self.realname = message.params[3]
        self._try_register()

    def _try_register(self) -> None:
        if (self.registered or self._cap_negotiating or self.nick is None
                or self.user is None):
            return
        owner = self.host.nick_owner(self.nick)
        if owner is not None and owner is not self:
            self.reply("433", self.nick, "Nickname is already in use")
            self.nick = None
            return
        self.registered = True
        self.host.claim_nick(self, None, self.nick)
        self._update_source()
        self._send_welcome()
        self._set_deadline(self.limits.ping_after, self._idle_check)

    def _send_welcome(self) -> None:
        name = self.host.server_name
        self.reply("001", "Welcome to chatroom, %s" % (self.source,))
        self.reply("002", "Your host is %s, running chatroom %s" % (
            name, __version__))
        self.reply("003", "This server was created %s" % (
            server_time(self.host.created_ms),))
        self.reply("004", name, "chatroom-" + __version__, "i", "iknot", "ko")
        tokens = isupport_tokens(self.limits)
        for start in range(0, len(tokens), 12):
            self.reply("005", *tokens[start:start + 12],
                       "are supported by this server")
        self._send_motd()

    def _send_motd(self) -> None:
        if not self.host.motd:
            self.reply("422", "MOTD File is missing")
            return
        self.reply("375", "- %s Message of the day - " % (self.host.server_name,))
        for text in self.host.motd:
            self.reply("372", "- " + text)
        self.reply("376", "End of /MOTD command.")

    def irc_MOTD(self, message: Message) -> None:
        """Send the message of the day again."""
        self._send_motd()

    def irc_PING(self, message: Message) -> None:
        """Answer with PONG and the same token."""
        if not message.params:
            self.reply("409", "No origin specified")
            return
        self.send("PONG", self.host.server_name, message.params[0])

    def irc_PONG(self, message: Message) -> None:
        """The client is alive (any input already proved that)."""

    def irc_QUIT(self, message: Message) -> None:
        """Leave: every room sees the QUIT with the client's reason."""
        reason = message.params[0] if message.params else ""
        self.close("Quit: " + reason if reason else "Quit")

    # Rooms

    def _room_or_403(self, channel: str) -> Room | None:
        room = self.host.find_room(channel)
        if room is None:
            self.reply("403", channel, "No such channel")
        return room

    def irc_JOIN(self, message: Message) -> None:
        """Join rooms (C{JOIN #a,#b [key,key]}); C{JOIN 0} leaves every room.

        With C{--open-rooms}, joining a room that does not exist opens it.
        """
        if not message.params:
            self.reply("461", "JOIN", "Not enough parameters")
            return
        if message.params[0] == "0":
            for room in list(self.rooms.values()):
                self._leave(room, "PART", None)
            return
        keys = message.params[1].split(",") if len(message.params) > 1 else []
        for index, channel in enumerate(message.params[0].split(",")):
            room = self.host.find_room(channel)
            if room is None:
                room = self._open_room(channel)
                if room is None:
                    continue
            if self in room:
                continue
            refusal = room.join_refusal(self.nick or "",
                                        keys[index] if index < len(keys) else None)
            if refusal == "invite-only":
                self.reply("473", room.channel, "Cannot join channel (+i)")
                continue
            if refusal == "bad-key":
                self.reply("475", room.channel, "Cannot join channel (+k)")
                continue
            self.rooms[room.key] = room
            self._submit(room.join(self, self.host.now_ms()))

    def _open_room(self, channel: str) -> Room | None:
        """Open room C{channel} for this user, or say why not."""
        limits = self.limits
        if not limits.open_rooms:
            self.reply("403", channel, "No such channel")
            return None
        name = channel[1:] if channel.startswith("#") else ""
        if not valid_room_name(name, limits.room_name_length):
            self.reply("479", channel, "Illegal channel name: use up to %d letters,"
                       " digits and -_." % (limits.room_name_length,))
            return None
        if not self.host.can_open_room():
            self.host.count("refused-max-rooms")
            self.reply("437", channel, "Cannot open more rooms on this host")
            return None
        if self._opened_rooms is None:
            self._opened_rooms = TokenBucket(limits.opened_per_hour,
                                             limits.opened_per_hour / 3600.0)
        if not self._opened_rooms.take(self.clock.seconds()):
            self.host.count("refused-open-rate")
            self.reply("437", channel,
                       "You have opened too many rooms; try again later")
            return None
        return self.host.open_room(name)

    def _leave(self, room: Room, command: str, reason: str | None) -> None:
        del self.rooms[room.key]
        self._submit(room.leave(self, command, reason, self.host.now_ms()))

    def irc_PART(self, message: Message) -> None:
        """Leave rooms, with an optional reason."""
        if not message.params:
            self.reply("461", "PART", "Not enough parameters")
            return
        reason = message.params[1] if len(message.params) > 1 else None
        for channel in message.params[0].split(","):
            room = self._room_or_403(channel)
            if room is None:
                continue
            if self not in room:
                self.reply("442", channel, "You're not on that channel")
                continue
            self._leave(room, "PART", reason)

    def irc_NAMES(self, message: Message) -> None:
        """List who is in a room."""
        if not message.params:
            self.reply("366", "*", "End of /NAMES list")
            return
        for channel in message.params[0].split(","):
            room = self.host.find_room(channel)
            if room is None:
                self.reply("366", channel, "End of /NAMES list")
            else:
                self._send_names(room)

    def _send_names(self, room: Room) -> None:
        nicks = [("@" if room.is_operator(m) else "") + m.nick for m in room.members]
        # Keep each 353 line well inside 512 bytes.
        chunk: list[str] = []
        size = 0
        for nick in nicks:
            if size + len(nick) > 400:
                self.reply("353", "=", room.channel, " ".join(chunk))
                chunk, size = [], 0
            chunk.append(nick)
            size += len(nick) + 1
        if chunk:
            self.reply("353", "=", room.channel, " ".join(chunk))
        self.reply("366", room.channel, "End of /NAMES list")

    def _send_topic(self, room: Room, on_join: bool = False) -> None:
        topic = room.topic
        if not topic.text:
            if not on_join:
                self.reply("331", room.channel, "No topic is set")
            return
        self.reply("332", room.channel, topic.text)
        self.reply("333", room.channel, topic.setter.split("!")[0],
                   str(topic.time_ms // 1000))

    def irc_TOPIC(self, message: Message) -> None:
        """Show or change a room's topic."""
        if not message.params:
            self.reply("461", "TOPIC", "Not enough parameters")
            return
        room = self._room_or_403(message.params[0])
        if room is None:
            return
        if len(message.params) == 1:
            self._send_topic(room)
            return
        if self not in room:
            self.reply("442", room.channel, "You're not on that channel")
            return
        text = message.params[1][:TOPICLEN]
        try:
            event = room.set_topic(self, text, self.host.now_ms())
        except NotOperator as error:
            self._refuse(room, error)
            return
        self._submit(event)

    def irc_WHO(self, message: Message) -> None:
        """List a room's members, or one user (basic C{352} replies)."""
        mask = message.params[0] if message.params else "*"
        room = self.host.find_room(mask)
        if room is not None:
            members = room.members
        else:
            owner = self.host.nick_owner(mask)
            members = (owner,) if owner is not None else ()
        for member in members:
            flags = "H@" if room is not None and room.is_operator(member) else "H"
            self.reply("352", room.channel if room else "*", member.user,
                       member.address, self.host.server_name, member.nick,
                       flags, "0 " + member.realname)
        self.reply("315", mask, "End of /WHO list")

    def irc_MODE(self, message: Message) -> None:
        """Room modes (C{+i}, C{+t}, C{+k key}, C{+o nick}); users may set C{+i}."""
        if not message.params:
            self.reply("461", "MODE", "Not enough parameters")
            return
        target = message.params[0]
        if target.startswith("#"):
            room = self._room_or_403(target)
            if room is not None:
                self._room_mode(room, message.params[1:])
            return
        if casefold(target) != casefold(self.nick or ""):
            self.reply("502", "Can't change mode for other users")
        elif len(message.params) == 1:
            self.reply("221", "+i")
        else:
            self.send("MODE", self.nick or "*", message.params[1],
                      prefix=self.source)

    def _room_mode(self, room: Room, params: tuple[str, ...]) -> None:
        if not params:
            self.reply("324", room.channel, *room.mode_string(self in room))
            self.reply("329", room.channel, str(room.created_ms // 1000))
            return
        if params[0] in ("b", "+b", "e", "+e", "I", "+I"):
            # List queries: this host keeps no such lists.
            self.reply({"b": "368", "e": "349", "I": "347"}[params[0][-1]],
                       room.channel, "End of list")
            return
        try:
            changes = parse_mode_changes(params[0], params[1:])
        except UnknownMode as e:
            self.reply("472", str(e), "is unknown mode char to me")
            return
        except MissingModeParameter:
            self.reply("461", "MODE", "Not enough parameters")
            return
        try:
            event = room.change_modes(self, changes, self.host.now_ms())
        except (NotAMember, NotOperator) as error:
            self._refuse(room, error)
            return
        for change in changes:
            if change.mode == "o" and room.member_named(change.param or "") is None:
                self.reply("441", change.param or "*", room.channel,
                           "They aren't on that channel")
        if event is not None:
            self.host.save_modes(room)
            self._submit(event)

    def _refuse(self, room: Room, error: Exception) -> None:
        """Answer a room's refusal: not a member (442) or not operator (482)."""
        if isinstance(error, NotOperator):
            self.reply("482", room.channel, "You're not channel operator")
        else:
            self.reply("442", room.channel, "You're not on that channel")

    def irc_KICK(self, message: Message) -> None:
        """An operator removes members: C{KICK #room nick[,nick] [:reason]}."""
        if len(message.params) < 2:
            self.reply("461", "KICK", "Not enough parameters")
            return
        room = self._room_or_403(message.params[0])
        if room is None:
            return
        reason = message.params[2] if len(message.params) > 2 else self.nick or ""
        for nick in message.params[1].split(",")[:TARGMAX]:
            target = room.member_named(nick)
            if target is None:
                self.reply("441", nick, room.channel, "They aren't on that channel")
                continue
            try:
                event = room.kick(self, target, reason, self.host.now_ms())
            except (NotAMember, NotOperator) as error:
                self._refuse(room, error)
                return
            target.rooms.pop(room.key, None)
            self._submit(event)

    def irc_INVITE(self, message: Message) -> None:
        """Invite a user into a room (operators only when it is C{+i})."""
        if len(message.params) < 2:
            self.reply("461", "INVITE", "Not enough parameters")
            return
        nick, channel = message.params[:2]
        other = self.host.nick_owner(nick)
        if other is None or not other.registered:
            self.reply("401", nick, "No such nick/channel")
            return
        room = self._room_or_403(channel)
        if room is None:
            return
        if other in room:
            self.reply("443", other.nick, room.channel, "is already on channel")
            return
        try:
            room.invite(self, other.nick)
        except (NotAMember, NotOperator) as error:
            self._refuse(room, error)
            return
        self.reply("341", other.nick, room.channel)
        other.send("INVITE", other.nick, room.channel, prefix=self.source)

    # Messages

    def irc_PRIVMSG(self, message: Message) -> None:
        """Send a message to a room, or privately to one user."""
        self._post(message)

    def irc_NOTICE(self, message: Message) -> None:
        """Like PRIVMSG, but never answered with an error (RFC 2812 3.3.2)."""
        self._post(message, quiet=True)

    def irc_TAGMSG(self, message: Message) -> None:
        """Relay client-only tags (typing notices...) to a room or user."""
        if "message-tags" in self.caps:
            self._post(message, quiet=True)

    def _post(self, message: Message, quiet: bool = False) -> None:
        command = message.command
        params = message.params
        if not params:
            if not quiet:
                self.reply("411", "No recipient given (%s)" % (command,))
            return
        if command == "TAGMSG":
            text = None
        elif len(params) < 2 or not params[1]:
            if not quiet:
                self.reply("412", "No text to send")
            return
        else:
            text = params[1]
        client_tags = {k: v for k, v in message.tags.items() if k.startswith("+")}
        for target in params[0].split(",")[:TARGMAX]:
            if target.startswith("#"):
                self._post_to_room(command, target, text, client_tags, quiet)
            else:
                self._post_to_user(command, target, text, client_tags, quiet)

    def _post_to_room(self, command: str, channel: str, text: str | None,
                      client_tags: dict[str, str], quiet: bool) -> None:
        room = self.host.find_room(channel)
        if room is None:
            if not quiet:
                self.reply("403", channel, "No such channel")
            return
        if self not in room:
            if not quiet:
                self.reply("404", channel, "Cannot send to channel")
            return
        now = self.host.now_ms()
        if text is None:
            # TAGMSG: relayed, but neither numbered nor stored.
            event = Event(room=None, seq=None, time_ms=now, command=command,
                          source=self.source, params=(room.channel,),
                          client_tags=client_tags, audience=room.audience,
                          origin=self)
        else:
            event = room.post(self, command, text, now, client_tags)
        self._submit(event)

    def _post_to_user(self, command: str, nick: str, text: str | None,
                      client_tags: dict[str, str], quiet: bool) -> None:
        other = self.host.nick_owner(nick)
        if other is None or not other.registered:
            if not quiet:
                self.reply("401", nick, "No such nick/channel")
            return
        params = (other.nick,) if text is None else (other.nick, text)
        audience = (other,) if other is self else (other, self)
        # Private messages are relayed, not numbered and not stored.
        self._submit(Event(room=None, seq=None, time_ms=self.host.now_ms(),
                           command=command, source=self.source, params=params,
                           client_tags=client_tags, audience=audience,
                           origin=self))

    # History

    def irc_CHATHISTORY(self, message: Message) -> None:
        """IRCv3 draft/chathistory: LATEST, BEFORE, AFTER, AROUND, BETWEEN."""
        params = message.params
        if params and params[0].upper() == "TARGETS":
            self._send_batch("draft/chathistory-targets", (), [])
            return
        try:
            request = parse_request(params, self.limits.history_limit)
            room = self.host.find_room(request.channel)
            if room is None:
                raise HistoryRequestError("INVALID_TARGET", request.subcommand,
                                          request.channel, "No such channel")
            events = select_events(self.host.store, room, request,
                                   "draft/event-playback" not in self.caps)
        except HistoryRequestError as e:
            self.send("FAIL", "CHATHISTORY", e.code, *e.params)
            return
        self._send_batch("chathistory", (room.channel,), events)

    def _send_batch(self, kind: str, params: tuple[str, ...],
                    events: list[Event]) -> None:
        """Send history events, in a batch when the client takes batches."""
        variant = self.variant
        prefix = self.host.server_name
        if "batch" not in self.caps:
            lines = [event.line(variant) for event in events]
        else:
            ref = self._new_batch_id()
            lines = [format_line("BATCH", "+" + ref, kind, *params, prefix=prefix)]
            for event in events:
                tags = event.tags_for(variant)
                tags["batch"] = ref
                lines.append(format_line(event.command, *event.params,
                                         prefix=event.source, tags=tags))
            lines.append(format_line("BATCH", "-" + ref, prefix=prefix))
        if self._label_lines is not None:
            self._label_lines.extend(lines)
        else:
            self._write(b"".join(lines))


def _set_no_delay(transport: Any) -> None:
    """Turn off Nagle on the TCP connection under C{transport}, if any.

    Output is already batched once per reactor turn, so Nagle's algorithm
    would only add delay (up to a delayed-ACK timeout) to every turn.
    """
    while transport is not None:
        set_no_delay = getattr(transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
            return
        transport = getattr(transport, "transport", None)


class IRCFactory(protocol.Factory):
    """Makes an L{IRCConnection} for every client of one L{RoomHost}."""

    def __init__(self, host: RoomHost) -> None:
        self.host = host

    def buildProtocol(self, addr: Any) -> IRCConnection:
        connection = IRCConnection(self.host)
        connection.factory = self
        return connection
