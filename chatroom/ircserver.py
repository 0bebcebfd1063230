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

Data flows one way through small parts: the transport's bytes go through
the L{chatroom.lineguard.LineGuard} (framing, RecvQ, flood delay), are
parsed (L{chatroom.core.ircline.parse_line}), and the command table
(L{chatroom.commands.run}) runs the handler, which calls the host (rooms,
membership, the per-turn commit) and answers through a
L{chatroom.reply.Reply}.  The connection itself is the client's member
object (L{chatroom.interfaces.IRoomMember}): its nick, capabilities and
output, and its lifecycle (L{chatroom.core.lifecycle.Lifecycle}, one
deadline per phase).  Room state lives in the host and the rooms, never
here.  The wire format is documented in C{docs/protocol-room.rst}.
"""

from __future__ import annotations

import functools
from typing import Any

from twisted.internet import defer, interfaces, protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatroom import commands
from chatroom.commands.registration import CAPABILITIES, isupport_tokens, quit_reason
from chatroom.core.ircline import (
    InvalidUTF8,
    LineTooLong,
    ParseError,
    format_line,
    parse_line,
)
from chatroom.core.lifecycle import Deadlines, Due, Lifecycle, Phase
from chatroom.core.room import EXTENDED_JOIN, MESSAGE_TAGS, SERVER_TIME
from chatroom.core.tokenbucket import TokenBucket
from chatroom.host import RoomHost
from chatroom.interfaces import IRoomMember
from chatroom.lineguard import LineGuard
from chatroom.tls import client_key

__all__ = ["CAPABILITIES", "IRCConnection", "IRCFactory", "isupport_tokens"]

#: What the rooms are told when a client goes without a reason.
CONNECTION_CLOSED = "Connection closed"

#: Seconds a closed connection may take to go away before it is aborted.
CLOSE_GRACE = 10.0

#: The capabilities of a client that negotiated none, shared by all.
_NO_CAPS: frozenset[str] = frozenset()


class ReplyQueue(list):  # type: ignore[type-arg]
    """A connection's replies not yet written, oldest first.

    A list with C{popleft}, not a C{collections.deque}: it rarely holds
    more than a reply or two, and an empty deque keeps a 64-slot block
    (760 bytes) for every idle member.
    """

    __slots__ = ()

    def popleft(self) -> Any:
        """Remove and return the oldest reply."""
        return self.pop(0)


@implementer(IRoomMember, interfaces.IHandshakeListener, interfaces.IPushProducer)
class IRCConnection(protocol.Protocol):
    """One IRC client of a host: a room member over TLS (or plain TCP).

    @ivar nick: the nickname, C{None} until the client sent a valid one.
    @ivar user: the user name (C{~name}), C{None} until C{USER}.
    @ivar caps: the IRCv3 capabilities the client negotiated.
    @ivar variant: how events are formatted for it (bits of
        L{chatroom.core.room.MESSAGE_TAGS} and C{SERVER_TIME}).
    @ivar echo: whether it negotiated C{echo-message}.
    """

    log = Logger()

    # A host keeps one per member, most of them idle: slots instead of a
    # per-instance dict.  C{transport}, C{connected} and C{factory} are set
    # by Twisted; they are listed because Protocol itself has no slots.
    __slots__ = (
        "transport",
        "connected",
        "factory",
        "host",
        "clock",
        "nick",
        "user",
        "realname",
        "away",
        "oper",
        "wallops",
        "bot",
        "_monitoring",
        "_read_markers",
        "tls",
        "signon_ms",
        "last_active_ms",
        "address",
        "source",
        "caps",
        "variant",
        "echo",
        "cap_negotiating",
        "client_key",
        "password",
        "opened_rooms",
        "lifecycle",
        "_guard",
        "_timer",
        "_batch_ids",
        "replies",
        "_quit_reason",
        "_lost_waiters",
    )

    def __init__(self, host: RoomHost) -> None:
        # Protocol's class defaults, which the slots above hide.
        self.transport: Any = None
        self.connected = 0
        self.factory: Any = None
        self.host = host
        self.clock = host.clock
        self.nick: str | None = None
        self.user: str | None = None
        self.realname = ""
        #: The away message (C{AWAY}), C{None} when present.
        self.away: str | None = None
        #: Whether this connection gave an operator's credentials (C{OPER}).
        self.oper = False
        #: User mode C{+w}: it receives C{WALLOPS}.
        self.wallops = False
        #: User mode C{+B}: a bot (IRCv3 bot-mode).
        self.bot = False
        # Made on first use (L{monitoring}, L{read_markers}): most members
        # never send MONITOR or MARKREAD.
        self._monitoring: dict[str, str] | None = None
        self._read_markers: dict[str, int] | None = None
        #: Whether the connection runs over TLS (C{671} in C{WHOIS}).
        self.tls = False
        #: When it connected and when it last sent a message, in
        #: milliseconds since the epoch (C{317} in C{WHOIS}).
        self.signon_ms = 0
        self.last_active_ms = 0
        self.address = "unknown"
        self.source = "*"
        self.caps: frozenset[str] = _NO_CAPS
        self.variant = 0
        self.echo = False
        #: Between C{CAP LS}/C{REQ} and C{CAP END} registration waits.
        self.cap_negotiating = False
        #: The raw Ed25519 key of the client's TLS certificate, if it sent
        #: one: the same key on a new connection takes over this one.
        self.client_key: bytes | None = None
        #: What the client gave with C{PASS}: the password of private rooms.
        self.password: str | None = None
        #: Rooms this connection may still open (C{--open-rooms}).
        self.opened_rooms: TokenBucket | None = None
        self.lifecycle: Lifecycle | None = None
        self._guard: LineGuard | None = None
        self._timer: Any = None
        self._batch_ids = 0
        #: Replies not yet written, in the order of their commands
        #: (L{chatroom.reply.Reply}).
        self.replies = ReplyQueue()
        self._quit_reason = CONNECTION_CLOSED
        self._lost_waiters: list[defer.Deferred[None]] | None = None

    @property
    def monitoring(self) -> dict[str, str]:
        """The nicks it monitors (C{MONITOR}), folded to as given."""
        if self._monitoring is None:
            self._monitoring = {}
        return self._monitoring

    @property
    def read_markers(self) -> dict[str, int]:
        """Last-read times (C{MARKREAD}), folded target to milliseconds."""
        if self._read_markers is None:
            self._read_markers = {}
        return self._read_markers

    @property
    def registered(self) -> bool:
        """Whether the client registered and is still connected."""
        return self.lifecycle is not None and self.lifecycle.registered

    # Lifecycle

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.address = getattr(peer, "host", None) or "local"
        refusal = self.host.admit(self.address)
        if refusal is not None:
            self.transport.write(format_line("ERROR", refusal))
            self.transport.loseConnection()
            return
        limits = self.host.limits
        tls = self.tls = interfaces.ISSLTransport.providedBy(self.transport)
        self.signon_ms = self.last_active_ms = self.host.now_ms()
        self.lifecycle = Lifecycle(
            _deadlines(
                limits.handshake_timeout,
                limits.registration_timeout,
                limits.ping_after,
                limits.close_after,
            ),
            self.clock.seconds(),
            tls,
        )
        self._guard = LineGuard(
            self.transport,
            self.clock,
            limits,
            self.lineReceived,
            self._violation,
            self.host.count,
        )
        self.host.connections.add(self)
        _set_no_delay(self.transport)
        self.transport.registerProducer(self, True)
        self._arm()

    def handshakeCompleted(self) -> None:
        """TLS is up: registration time starts now."""
        if self.lifecycle is not None and self.lifecycle.handshake_done(
            self.clock.seconds()
        ):
            self.client_key = client_key(self.transport)
            self._arm()

    def replace_transport(self, transport: Any) -> None:
        """A layer between this connection and its transport stepped out
        (L{chatroom.handshakes.HandshakeLimitProtocol}, once the TLS
        handshake completed): write to and pause C{transport}, the layer
        below it, from now on.  C{address} keeps what was read at
        C{connectionMade}."""
        self.transport = transport
        if self._guard is not None:
            self._guard.transport = transport

    def register(self) -> None:
        """The client registered (called by the command table)."""
        assert self.lifecycle is not None and self._guard is not None
        self.lifecycle.register(self.clock.seconds())
        self._guard.registered()
        self._arm()

    def _arm(self) -> None:
        """Run what is due and schedule the next deadline of this phase
        (in the host's L{chatroom.timerqueue.TimerQueue}: one timer for
        every connection, not a C{DelayedCall} each)."""
        if self._timer is not None:
            self.host.timers.cancel(self._timer)
            self._timer = None
        assert self.lifecycle is not None
        now = self.clock.seconds()
        action, wait = self.lifecycle.due(now)
        if wait is not None:
            self._timer = self.host.timers.schedule(self, now + wait)
        if action is Due.ABORT:
            if self.lifecycle.phase == Phase.HANDSHAKING:
                self.host.count("handshake-timeouts")
            self.transport.abortConnection()
        elif action is Due.REGISTRATION_TIMEOUT:
            self.host.count("registration-timeouts")
            self.close("Registration timeout")
        elif action is Due.PING:
            self.send("PING", self.host.server_name)
        elif action is Due.PING_TIMEOUT:
            self.close(
                "Ping timeout: %d seconds" % (int(self.host.limits.close_after),)
            )

    def deadline_passed(self) -> None:
        """The deadline of this phase passed (called by the host's
        L{chatroom.timerqueue.TimerQueue})."""
        self._timer = None
        self._arm()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self._timer is not None:
            self.host.timers.cancel(self._timer)
            self._timer = None
        waiters, self._lost_waiters = self._lost_waiters or [], None
        if self.lifecycle is not None and self.lifecycle.lost(self.clock.seconds()):
            assert self._guard is not None
            self._guard.stop()
            self.host.connections.discard(self)
            self.host.release(self.address)
            self.host.quit(self, self._delayed_quit_reason() or self._quit_reason)
        for waiter in waiters:
            waiter.callback(None)

    def _delayed_quit_reason(self) -> str | None:
        """The reason of a C{QUIT} the client sent that flood control still
        held when the connection went (a client that quits and hangs up at
        once, such as C{chatroom say}): its rooms are told that reason
        rather than that the connection closed."""
        if self._quit_reason != CONNECTION_CLOSED or self._guard is None:
            return None
        for line in self._guard.delayed():
            try:
                message = parse_line(line)
            except ParseError:
                continue
            if message.command == "QUIT":
                return quit_reason(message)
        return None

    def when_lost(self) -> defer.Deferred[None]:
        """A Deferred that fires once the connection is closed."""
        waiter: defer.Deferred[None] = defer.Deferred()
        if self._lost_waiters is None:
            self._lost_waiters = []
        self._lost_waiters.append(waiter)
        return waiter

    def abort(self) -> None:
        """Drop the connection now, without waiting for its output."""
        if self.lifecycle is not None:
            self.lifecycle.close(self.clock.seconds())
        self.transport.abortConnection()

    def close(self, reason: str) -> None:
        """Say C{ERROR :reason}, leave every room with that reason, close.

        A TLS close waits for the peer's close_notify; a peer that never
        sends it is cut off after L{CLOSE_GRACE} seconds (the C{CLOSING}
        phase's deadline).
        """
        if self.lifecycle is None or not self.lifecycle.open:
            return
        self._quit_reason = reason
        self.write(
            format_line("ERROR", "Closing link: %s (%s)" % (self.address, reason))
        )
        self.lifecycle.close(self.clock.seconds())
        self.transport.loseConnection()
        self._arm()

    def disconnect(self, reason: str) -> None:
        """L{IRoomMember.disconnect}: close the connection."""
        self.close(reason)

    def _violation(self, counter: str, reason: str, throttle: bool) -> None:
        """The peer passed a limit of its L{LineGuard}: drop it now,
        dropping what is queued (it is misbehaving)."""
        self.host.count(counter)
        if throttle:
            self.host.throttle(self.address)
        if self.lifecycle is None or not self.lifecycle.open:
            return
        self._quit_reason = reason
        self.lifecycle.close(self.clock.seconds())
        self.transport.write(format_line("ERROR", reason))
        self.transport.abortConnection()

    # Output

    def write(self, data: bytes) -> None:
        """Send C{data} (whole lines) unless the connection is closing."""
        if self.lifecycle is not None and self.lifecycle.open:
            assert self._guard is not None
            self._guard.write(data)

    def deliver(self, data: bytes) -> None:
        """L{IRoomMember.deliver}: room events, already formatted."""
        self.write(data)

    def send(
        self,
        command: str,
        *params: str,
        prefix: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        """Send one line now, from the server unless C{prefix} says otherwise
        (for lines no command of this client asked for, such as C{INVITE})."""
        self.write(
            format_line(
                command, *params, prefix=prefix or self.host.server_name, tags=tags
            )
        )

    def new_batch_id(self) -> str:
        """A batch reference unique on this connection."""
        self._batch_ids += 1
        return "b%d" % (self._batch_ids,)

    def pauseProducing(self) -> None:
        """The transport is full: hold output and stop reading this client."""
        if self._guard is not None:
            self._guard.pause_producing()

    def resumeProducing(self) -> None:
        """The transport drained: send what was held, read again."""
        if self._guard is not None:
            self._guard.resume_producing()

    def stopProducing(self) -> None:
        """The transport is going away; nothing to do."""

    # State the command handlers change

    def set_caps(self, caps: set[str]) -> None:
        """The client now has capabilities C{caps}."""
        self.caps = frozenset(caps)
        variant = 0
        if "message-tags" in caps:
            variant |= MESSAGE_TAGS
        if "server-time" in caps:
            variant |= SERVER_TIME
        if "extended-join" in caps:
            variant |= EXTENDED_JOIN
        self.variant = variant
        self.echo = "echo-message" in caps

    def update_source(self) -> None:
        """Recompute C{nick!user@host} after a nick or user change."""
        self.source = "%s!%s@%s" % (self.nick, self.user, self.address)

    # Input

    def dataReceived(self, data: bytes) -> None:
        if self.lifecycle is None or not self.lifecycle.open:
            return
        self.lifecycle.input(self.clock.seconds())
        assert self._guard is not None
        self._guard.data_received(data)

    def lineReceived(self, line: bytes) -> None:
        """Parse one line and run its command; bad input is answered."""
        if self.lifecycle is None or not self.lifecycle.open:
            return
        try:
            message = parse_line(line)
        except LineTooLong:
            self.host.count("input-too-long")
            self.send("417", self.nick or "*", "Input line was too long")
            return
        except InvalidUTF8:
            self.host.count("invalid-utf8")
            self.send(
                "FAIL",
                "*",
                "INVALID_UTF8",
                "Message rejected, your client must send UTF-8",
            )
            return
        except ParseError:
            self.host.count("malformed-lines")
            return
        commands.run(self.host, self, message)


@functools.lru_cache(maxsize=4)
def _deadlines(
    handshake: float, registration: float, ping_after: float, close_after: float
) -> Deadlines:
    """The phase deadlines of a host's connections (seconds, from its
    L{chatroom.host.Limits}): one shared frozen object, not one per
    connection."""
    return Deadlines(handshake, registration, ping_after, close_after, CLOSE_GRACE)


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
