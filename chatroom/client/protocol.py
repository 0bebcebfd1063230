# -*- test-case-name: tests.test_e2e_tls -*-
"""The client side of the room protocol: register, join, talk, fetch history.

L{RoomClientProtocol} knows IRC lines, not terminals: it negotiates the
capabilities chatroom clients use, registers, and reports every message
to an L{IRoomClientListener}.  It sends nothing before the TLS handshake is
complete, so a server whose key is not the pinned room key never receives a
single IRC byte.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from twisted.internet import defer, interfaces, protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from chatroom.core.ircline import (
    LineBuffer,
    Message,
    ParseError,
    format_line,
    parse_line,
)
from chatroom.client import errors
from chatroom.client.keepalive import PROBE_INTERVAL, PROBE_TIMEOUT, Keepalive
from chatroom.core.names import parse_msgid
from chatroom.client.fanout import wanted_caps as fanout_wanted_caps

#: The longest IRC part of a line from the server, CR LF included.  A member
#: may send 512 bytes (RFC 1459 2.3); the host relays that line with the
#: member's source in front (nick up to 30, user up to 11, host up to 63
#: bytes: HOSTLEN), so 1024 leaves room for any legal relayed line.
MAX_RELAYED_BYTES = 1024

#: The longest tag part from the server: IRCv3 message-tags lets servers
#: send up to 8191 bytes of tags (with the C{@} and the space).
MAX_SERVER_TAG_BYTES = 8191

#: Capabilities a chatroom client asks for (when the server offers them).
CLIENT_CAPS = (
    "message-tags",
    "server-time",
    "echo-message",
    "batch",
    "labeled-response",
    "draft/chathistory",
    "draft/event-playback",
)


class IRoomClientListener(Interface):
    """What a client application hears from its L{RoomClientProtocol}."""

    def message_received(message):
        """A parsed line arrived (every line, after registration too)."""

    def connection_lost(reason):
        """The connection ended with C{reason} (a Failure)."""


@implementer(IRoomClientListener)
class RoomClientListener:
    """A listener that ignores everything; subclass what you need."""

    def message_received(self, message: Message) -> None:
        """Ignore the message."""

    def connection_lost(self, reason: Failure) -> None:
        """Ignore the loss."""


class NickInUse(Exception):
    """The server refused the nickname (433)."""


class LinkDead(Exception):
    """The host stayed silent through a keepalive probe; the client hung up."""


@implementer(interfaces.IHandshakeListener)
class RoomClientProtocol(protocol.Protocol):
    """An IRC client connection to a chatroom host (or any IRC server).

    @param fallback_nicks: nicks to try in order when the server says the
        nick is taken (433) during registration; when they are all taken
        too, L{registered} fails with L{NickInUse}.
    @param clock: C{seconds()} and C{callLater()}; with one, the connection
        is watched by a L{Keepalive} once registered (PING after
        C{probe_interval} seconds without a line, hang up when nothing
        arrives C{probe_timeout} seconds later: the connection is then
        lost with L{LinkDead}).  Without one, nothing is probed.
    @ivar registered: fires with the welcome message (001), or fails with
        L{NickInUse} or the connection's loss reason.
    @ivar caps: the capabilities the server acknowledged.
    @ivar isupport: the server's ISUPPORT (005) tokens, name to value.
    @ivar source: C{nick!user@host} as the server relays our lines, from
        the echo of our own JOIN (C{None} before).
    """

    log = Logger()

    def __init__(
        self,
        nick: str,
        listener: Any = None,
        wanted_caps: tuple[str, ...] = CLIENT_CAPS,
        realname: str = "chatroom user",
        fallback_nicks: Sequence[str] = (),
        clock: Any = None,
        probe_interval: float = PROBE_INTERVAL,
        probe_timeout: float = PROBE_TIMEOUT,
    ) -> None:
        self.nick = nick
        self.wanted_nick = nick
        self._fallbacks = list(fallback_nicks)
        self.isupport: dict[str, str] = {}
        self.source: str | None = None
        self.realname = realname
        self.listener = listener if listener is not None else RoomClientListener()
        self.wanted_caps = wanted_caps
        self.caps: set[str] = set()
        self.registered: defer.Deferred[Message] = defer.Deferred()
        self._lines = LineBuffer(max_unterminated=64 * 1024)
        self._waiters: list[tuple[Callable[[Message], bool], defer.Deferred]] = []
        self._labels = 0
        self._started = False
        self._dead: str | None = None
        self.keepalive: Keepalive | None = None
        if clock is not None:
            self.keepalive = Keepalive(
                clock, self._probe, self._link_dead, probe_interval, probe_timeout
            )

    # Connection

    def connectionMade(self) -> None:
        if not interfaces.ISSLTransport.providedBy(self.transport):
            self.handshakeCompleted()

    def handshakeCompleted(self) -> None:
        """Only now, with the server's key checked, does IRC begin."""
        self._started = True
        self.send("CAP", "LS", "302")
        self.send("NICK", self.nick)
        self.send("USER", self.nick.lower()[:10], "0", "*", self.realname)

    def _probe(self, token: str) -> None:
        self.send("PING", token)

    def _link_dead(self, why: str) -> None:
        self._dead = why
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self.keepalive is not None:
            self.keepalive.stop()
        if self._dead is not None:
            reason = Failure(LinkDead(self._dead))
        if not self.registered.called:
            self.registered.errback(reason)
        waiters, self._waiters = self._waiters, []
        for _, waiter in waiters:
            waiter.errback(reason)
        self.listener.connection_lost(reason)

    # Output

    def send(
        self, command: str, *params: str, tags: dict[str, str] | None = None
    ) -> None:
        """Send one IRC line."""
        self.transport.write(format_line(command, *params, tags=tags))

    def next_label(self) -> str:
        """A fresh C{labeled-response} label."""
        self._labels += 1
        return "c%d" % (self._labels,)

    # Input

    def dataReceived(self, data: bytes) -> None:
        if self.keepalive is not None:
            self.keepalive.line_received()
        for line in self._lines.feed(data):
            try:
                message = parse_line(line, MAX_RELAYED_BYTES, MAX_SERVER_TAG_BYTES)
            except ParseError:
                self.log.warn("Ignoring a malformed line from the server")
                continue
            self._handle(message)

    def _handle(self, message: Message) -> None:
        command = message.command
        if command == "PING":
            self.send("PONG", *message.params)
        elif command == "CAP" and len(message.params) >= 3:
            self._cap(message.params[1], message.params[-1])
        elif command == "001":
            self.nick = message.params[0]
            if self.keepalive is not None:
                self.keepalive.start()
            if not self.registered.called:
                self.registered.callback(message)
        elif (
            command == "JOIN"
            and message.prefix is not None
            and message.prefix.partition("!")[0] == self.nick
        ):
            # Our own source as the host relays it: what splitting counts.
            self.source = message.prefix
        elif command == "005":
            for token in message.params[1:-1]:
                name, _, value = token.partition("=")
                self.isupport[name.upper()] = value
        elif command == "433" and not self.registered.called and self._fallbacks:
            self.nick = self._fallbacks.pop(0)
            self.send("NICK", self.nick)
        elif command in ("433", "432") and not self.registered.called:
            self.registered.errback(NickInUse(message.params[1]))
            self.transport.loseConnection()
        self.listener.message_received(message)
        if self._waiters:
            self._fire_waiters(message)

    def _cap(self, sub: str, text: str) -> None:
        if sub == "LS":
            offered = set(text.split())
            wanted = [c for c in self.wanted_caps if c in offered]
            # fan-out (issue 10): only with message-tags, server-time and
            # echo-message, or the host refuses the whole request.
            wanted = fanout_wanted_caps(wanted)
            if wanted:
                self.send("CAP", "REQ", " ".join(wanted))
            else:
                self.send("CAP", "END")
        elif sub == "ACK":
            self.caps.update(text.split())
            self.send("CAP", "END")
        elif sub == "NAK":
            self.send("CAP", "END")

    def _fire_waiters(self, message: Message) -> None:
        remaining = []
        for predicate, waiter in self._waiters:
            if predicate(message):
                waiter.callback(message)
            else:
                remaining.append((predicate, waiter))
        self._waiters = remaining

    def wait_for(self, predicate: Callable[[Message], bool]) -> defer.Deferred:
        """A Deferred that fires with the first next message matching."""
        waiter: defer.Deferred[Message] = defer.Deferred()
        self._waiters.append((predicate, waiter))
        return waiter

    # Requests

    def join(self, channel: str, key: str | None = None) -> defer.Deferred:
        """Join C{channel}, with the room password C{key} if given; fires
        with the end of NAMES (366) or the refusal numeric."""
        done = self.wait_for(
            lambda m: (
                m.command in ("366", "403", "405", "471", "473", "474", "475")
                and len(m.params) > 1
                and m.params[1] == channel
            )
        )
        if key:
            self.send("JOIN", channel, key)
        else:
            self.send("JOIN", channel)
        return done

    def history(
        self,
        channel: str,
        subcommand: str,
        *refs: str,
        limit: int = 100,
        strict: bool = False,
    ) -> defer.Deferred:
        """Fetch history; fires with the list of messages in the batch.

        A refusal (C{FAIL CHATHISTORY}) gives an empty list, or with
        C{strict} fails with L{errors.HistoryRefused}.
        """
        collected: list[Message] = []
        state: dict[str, str] = {}

        def matches(message: Message) -> bool:
            if (
                message.command == "BATCH"
                and len(message.params) >= 2
                and message.params[1] == "chathistory"
                and message.params[0].startswith("+")
                and "ref" not in state
            ):
                state["ref"] = message.params[0][1:]
                return False
            if message.command == "FAIL" and message.params[:1] == ("CHATHISTORY",):
                return True
            ref = state.get("ref")
            if ref is None:
                return False
            if message.command == "BATCH" and message.params[0] == "-" + ref:
                return True
            if message.tags.get("batch") == ref:
                collected.append(message)
            return False

        def finished(last: Message) -> list[Message]:
            if strict and last.command == "FAIL":
                raise errors.HistoryRefused(" ".join(last.params[1:]))
            return collected

        done = self.wait_for(matches)
        self.send("CHATHISTORY", subcommand, channel, *refs, str(limit))
        return done.addCallback(finished)


def sequence_of(message: Message) -> int | None:
    """The sequence number carried in a message's C{msgid}, if any."""
    msgid = message.tags.get("msgid")
    if msgid is None:
        return None
    parsed = parse_msgid(msgid)
    return parsed[1] if parsed else None
