# -*- test-case-name: tests.test_client_fanout -*-
"""Multicast delivery for the client: the fan-out socket, and the edge that
runs one room's L{FanoutReceiver} for a L{chatroom.client.session.RoomSession}.

The decisions (checks, replay window, reorder buffer, repair timing, when to
switch between multicast and TLS delivery) are made by the pure
L{chatroom.core.fanout_receiver.FanoutReceiver}; L{MulticastDelivery} feeds
it the room's C{FANOUT} lines, its numbered TLS events and the group's
datagrams, and performs the actions it returns: show an event, write a
C{FANOUT} request or a C{CHATHISTORY} request over TLS, tell the user which
mode the room is in.  The protocol is C{docs/protocol-fanout.rst}; what the
user sees is in C{docs/client.rst} ("Multicast delivery").

Datagrams are only ever received: the socket joins the group on an explicit
interface address (C{127.0.0.1} unless told otherwise) and also sets that
address as its outgoing multicast interface, so that nothing this client
might ever send to a group could leave through another interface.  Repair
requests go over TLS only (protocol-fanout.rst, "Reorder buffer and repair").
"""

from __future__ import annotations

import collections
import random as _random
import socket
from typing import Any, Callable, Sequence

import attrs
from twisted.internet import defer, error
from twisted.internet.interfaces import IReactorMulticast
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatroom.core.errors import ParseError
from chatroom.core.fanout import (
    CAPABILITY,
    COMMAND,
    KeyGrant,
    ModeChange,
    Repaired,
    RoomIdentity,
)
from chatroom.core.fanout_receiver import (
    SILENCE,
    Action,
    Deliver,
    FanoutReceiver,
    ModeReport,
    RequestHistory,
    SendRequest,
)
from chatroom.core.ircline import Message, format_line, parse_line
from chatroom.core.names import casefold, parse_msgid

__all__ = [
    "CAPABILITY",
    "DEFAULT_INTERFACE",
    "REQUIRED_CAPS",
    "FanoutOptions",
    "FanoutSocket",
    "MulticastDelivery",
]

DEFAULT_INTERFACE = "127.0.0.1"
"""The interface address the client joins fan-out groups on unless told
otherwise: loopback, like discovery's default and the host's
C{--fanout-interface}, so that nothing is heard from (or sent to) the
network until the user names an interface."""

REQUIRED_CAPS = ("message-tags", "server-time", "echo-message")
"""The capabilities the fan-out capability is requested with, and never
without (protocol-fanout.rst, "Capability": a datagram carries each event
exactly as a TLS member with these gets it; the host refuses the whole
C{CAP REQ} otherwise)."""

IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
"""Linux socket option: when on (the default) a socket bound to the
wildcard address receives every group any socket on the machine joined on
that port, not only its own."""

# The longest lines a datagram or the host may carry (the same bounds the
# client protocol parses the host's lines with: a relayed 512-byte line with
# its source, and the server's 8191 bytes of tags).
_MAX_IRC_BYTES = 1024
_MAX_TAG_BYTES = 8191

_log = Logger()


@attrs.frozen
class FanoutOptions:
    """How a session takes multicast delivery.

    @ivar interface: the IPv4 address of the interface to join fan-out
        groups on (C{--fanout-interface}); C{127.0.0.1} hears only a host on
        this machine.
    @ivar listen: C{(port, protocol) -> listening port}; by default the
        reactor's C{listenMulticast(port, protocol, interface="",
        listenMultiple=True)} (the port is bound on all addresses: a socket
        bound to the interface address would receive no multicast; it is
        shared, C{SO_REUSEADDR}, with other clients on this machine).
        Tests pass a fake.
    @ivar random: C{() -> float} in [0, 1), for the 50-200 ms repair wait.
    """

    interface: str = DEFAULT_INTERFACE
    listen: Callable[[int, DatagramProtocol], Any] | None = None
    random: Callable[[], float] = _random.random


def wanted_caps(wanted: Sequence[str]) -> list[str]:
    """C{wanted} without the fan-out capability unless every one of
    L{REQUIRED_CAPS} is in it too."""
    if CAPABILITY in wanted and not set(REQUIRED_CAPS) <= set(wanted):
        return [cap for cap in wanted if cap != CAPABILITY]
    return list(wanted)


class FanoutSocket(DatagramProtocol):
    """One UDP socket on a fan-out port, member of one group on one
    interface address.

    @ivar ready: fires with C{True} once the group is joined, or C{False}
        after a failure to join (logged as a warning, with the reason in
        L{failure_reason}); it never fails.
    @ivar received: datagrams received.
    """

    def __init__(
        self, group: str, interface: str, on_datagram: Callable[[bytes], None]
    ) -> None:
        self.group = group
        self.interface = interface
        self.on_datagram = on_datagram
        self.ready: Deferred[bool] = Deferred()
        self.received = 0
        self.failure_reason: str | None = None

    def startProtocol(self) -> None:
        """Turn IP_MULTICAST_ALL off, set the outgoing multicast interface,
        and join the group on the interface address."""
        transport = self.transport
        assert transport is not None
        try:
            transport.getHandle().setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        except OSError:
            pass  # not Linux: the option does not exist, nothing to turn off
        d = maybeDeferred(transport.setOutgoingInterface, self.interface)
        d.addCallback(lambda _: transport.joinGroup(self.group, self.interface))
        d.addCallbacks(lambda _: True, self._join_failed)
        d.chainDeferred(self.ready)

    def _join_failed(self, failure: Failure) -> bool:
        self.failure_reason = str(failure.value) or repr(failure.value)
        _log.warn(
            "Could not join fan-out group {group} on interface {interface}: {why}",
            group=self.group,
            interface=self.interface,
            why=self.failure_reason,
        )
        return False

    def datagramReceived(self, datagram: bytes, address: Any) -> None:
        """Hand the datagram on; the receiver checks everything."""
        self.received += 1
        self.on_datagram(datagram)


class MulticastDelivery:
    """Multicast delivery of one room for one session: the Twisted edge of a
    L{FanoutReceiver}.

    The session calls L{message_received} with every line of its current
    connection (outside C{CHATHISTORY} batches), L{caught_up} once it has
    joined and shown the history it fetched, L{connection_lost} when the
    connection ends, and L{stop} when it closes.  The first C{KEY} line
    starts a receiver whose reorder buffer begins after the last event the
    session showed; from then on every numbered event of the room, whether
    it came over TLS, in a datagram, as a repair or from a C{CHATHISTORY}
    catch-up, is shown through C{deliver} exactly once, in order.

    @param clock: C{seconds()} and C{callLater()}.
    @param q: the room key (32 raw bytes); C{room}: its name.
    @param deliver: called with each event's L{Message}, in order.
    @param report: called with one sentence when the delivery mode changes
        or multicast cannot be used.
    @param last_seq: returns the sequence number of the last event the
        session has shown (C{None}: none yet).
    @ivar drops: lines and datagrams this edge dropped, by reason (the
        receiver counts its own in C{receiver.drops}).
    """

    def __init__(
        self,
        reactor: Any,
        clock: Any,
        q: bytes,
        room: str,
        options: FanoutOptions,
        deliver: Callable[[Message], object],
        report: Callable[[str], None],
        last_seq: Callable[[], int | None],
    ) -> None:
        self.reactor = reactor
        self.clock = clock
        self.identity = RoomIdentity(q, room)
        self.channel = "#" + room
        self.room_key = casefold(room)
        self.options = options
        self.deliver = deliver
        self.report = report
        self.last_seq = last_seq
        self.receiver: FanoutReceiver | None = None
        self.protocol: Any = None
        self.socket: FanoutSocket | None = None
        self.drops: collections.Counter[str] = collections.Counter()
        self._pending_grant: KeyGrant | None = None
        self._caught_up = False
        self._port: Any = None
        self._where: tuple[str, int] | None = None
        self._closing: list[Deferred[Any]] = []
        self._timer: Any = None
        self._shown_mode = "tls"
        self._stopped = False

    @property
    def available(self) -> bool:
        """Whether this client can listen to a group at all (a reactor
        with multicast, or a C{listen} given); when not, the session does
        not ask for the capability, so the host keeps it on TLS and never
        counts it as a key holder."""
        return self.options.listen is not None or IReactorMulticast.providedBy(
            self.reactor
        )

    def wanted_caps(self, base: tuple[str, ...]) -> tuple[str, ...]:
        """The capabilities a connection asks for: C{base} and, when this
        client can listen to a group, the fan-out capability."""
        return base + (CAPABILITY,) if self.available else base

    @property
    def mode(self) -> str:
        """How the room's events arrive now: C{"tls"}, C{"starting"} (a
        datagram arrived, C{START} sent), C{"multicast"} or C{"stopping"}
        (datagrams stopped, C{STOP} sent)."""
        return self.receiver.mode if self.receiver is not None else "tls"

    # Hooks called by the session

    def message_received(self, proto: Any, message: Message) -> bool:
        """A line of the session's current connection.  Returns C{True} if
        it was taken here (a C{FANOUT} line, or a numbered event of the
        room once a receiver runs), C{False} if the session handles it."""
        if message.command == COMMAND:
            self._fanout_line(proto, message)
            return True
        if message.command == "FAIL" and message.params[:1] == (COMMAND,):
            self.drops["fail"] += 1
            _log.warn(
                "The host refused a fan-out request: {line}",
                line=" ".join(message.params),
            )
            return True
        if self.receiver is None:
            return False
        seq = self._seq_of(message)
        if seq is None:
            return False
        self._perform(
            self.receiver.tls_event(seq, _line_of(message), self.clock.seconds())
        )
        return True

    def caught_up(self, proto: Any) -> None:
        """The session has joined on C{proto} and shown everything up to
        its last sequence number: a key that came meanwhile starts the
        receiver now."""
        self.protocol = proto
        self._caught_up = True
        grant, self._pending_grant = self._pending_grant, None
        if grant is not None:
            self._start(grant)

    def connection_lost(self) -> None:
        """The connection ended: the host forgets this member's mode and
        key, so the receiver goes; the next connection's C{KEY} starts a
        new one.  The socket stays open (the next key usually names the
        same group)."""
        self._cancel_timer()
        self.receiver = None
        self.protocol = None
        self._pending_grant = None
        self._caught_up = False
        self._shown_mode = "tls"

    def stop(self) -> Deferred[None]:
        """Stop for good: cancel the timer, close the socket; fires once
        the socket is closed."""
        self.connection_lost()
        self._stopped = True
        self._close_socket()
        closing, self._closing = self._closing, []
        d = defer.gatherResults(closing, consumeErrors=True)
        return d.addCallback(lambda _: None)

    def close_after(self, closed: Deferred[None]) -> Deferred[None]:
        """L{stop}, and fire once both it and C{closed} have fired."""
        d = defer.gatherResults([closed, self.stop()], consumeErrors=True)
        return d.addCallback(lambda _: None)

    # Lines from the host

    def _fanout_line(self, proto: Any, message: Message) -> None:
        params = message.params
        verb = params[1] if len(params) > 1 else ""
        now = self.clock.seconds()
        try:
            if verb == "KEY":
                grant = KeyGrant.from_params(params)
            elif verb == "MODE":
                change = ModeChange.from_params(params)
            elif verb == "REPAIRED":
                repaired = Repaired.from_params(params)
            else:
                self.drops["unknown-verb"] += 1
                return
        except ParseError as e:
            self.drops[e.reason] += 1
            if e.reason == "unsupported-algorithm" and self.receiver is None:
                self.report(
                    "The host of %s offers multicast delivery with an"
                    " algorithm this client does not know; receiving"
                    " the room over TLS." % (self.channel,)
                )
            else:
                _log.warn("Ignoring a malformed FANOUT line: {why}", why=e)
            return
        if verb == "KEY":
            if casefold(grant.room) != self.room_key:
                self.drops["other-room"] += 1
            elif self.receiver is not None:
                self._perform(self.receiver.key_received(grant, now))
                self._listen(grant.group, grant.port)
            elif self._caught_up:
                self.protocol = proto
                self._start(grant)
            else:
                self._pending_grant = grant
            return
        if self.receiver is None:
            self.drops["no-receiver"] += 1
            return
        if verb == "MODE":
            self._perform(self.receiver.mode_changed(change, now))
        else:
            self._perform(self.receiver.repaired(repaired.ranges, now))

    def _seq_of(self, message: Message) -> int | None:
        msgid = message.tags.get("msgid")
        if msgid is None:
            return None
        parsed = parse_msgid(msgid)
        if parsed is None or parsed[0] != self.room_key:
            return None
        return parsed[1]

    # The receiver

    def _start(self, grant: KeyGrant) -> None:
        if casefold(grant.room) != self.room_key:
            self.drops["other-room"] += 1
            return
        last = self.last_seq()
        self.receiver = FanoutReceiver(
            self.identity,
            grant,
            1 if last is None else last + 1,
            self.clock.seconds(),
            self.options.random,
        )
        self._listen(grant.group, grant.port)
        self._rearm()

    def _datagram(self, data: bytes) -> None:
        if self.receiver is None:
            self.drops["no-receiver"] += 1
            return
        self._perform(self.receiver.datagram_received(data, self.clock.seconds()))

    def _tick(self) -> None:
        self._timer = None
        if self.receiver is not None:
            self._perform(self.receiver.tick(self.clock.seconds()))

    def _perform(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if isinstance(action, Deliver):
                try:
                    message = parse_line(action.line, _MAX_IRC_BYTES, _MAX_TAG_BYTES)
                except ParseError:
                    # Signed by the host, so a host bug; shown as missing.
                    self.drops["bad-event-line"] += 1
                    continue
                self.deliver(message)
            elif isinstance(action, SendRequest):
                self._send(COMMAND, *action.request.to_params())
            elif isinstance(action, RequestHistory):
                self._history(action)
            elif isinstance(action, ModeReport):
                self._mode_report(action)
        self._rearm()

    def _send(self, command: str, *params: str) -> None:
        proto = self.protocol
        if proto is None or proto.transport is None:
            self.drops["send-while-disconnected"] += 1
            return
        proto.send(command, *params)

    def _history(self, action: RequestHistory) -> None:
        proto, receiver = self.protocol, self.receiver
        if proto is None or receiver is None:
            return
        d = proto.history(
            self.channel,
            "AFTER",
            "msgid=%s:%d" % (self.room_key, action.after),
            limit=action.limit,
        )

        def got(messages: list[Message]) -> None:
            if self.receiver is not receiver:
                return  # another connection now; it catches up by itself
            events = []
            for message in messages:
                seq = self._seq_of(message)
                if seq is not None:
                    events.append((seq, _line_of(message)))
            self._perform(
                receiver.history_batch(
                    action.after, events, action.limit, self.clock.seconds()
                )
            )

        # A lost connection fails the request; the reconnect catches up.
        d.addCallbacks(got, lambda failure: None)

    def _mode_report(self, action: ModeReport) -> None:
        if action.mode == "multicast":
            if self._shown_mode != "multicast":
                group, port = self._where if self._where is not None else ("?", 0)
                self.report(
                    "Receiving %s by multicast (group %s port %d on"
                    " %s)." % (self.channel, group, port, self.options.interface)
                )
        elif self._shown_mode == "multicast" or self.mode == "stopping":
            self.report(
                "Multicast stopped for %s (no datagram for %d s);"
                " back to TLS delivery." % (self.channel, SILENCE)
            )
        else:
            hint = ""
            if self.options.interface.startswith("127."):
                hint = (
                    " (only a host on this machine can be heard on %s;"
                    " give --fanout-interface your network interface's"
                    " address)" % (self.options.interface,)
                )
            self.report(
                "No multicast datagram for %s arrived on %s within"
                " %d s%s; receiving the room over TLS."
                % (self.channel, self.options.interface, SILENCE, hint)
            )
        self._shown_mode = action.mode

    # Timer

    def _rearm(self) -> None:
        self._cancel_timer()
        if self.receiver is None:
            return
        wake = self.receiver.wake_at
        if wake is not None:
            self._timer = self.clock.callLater(
                max(0.0, wake - self.clock.seconds()), self._tick
            )

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # Socket

    def _listen(self, group: str, port: int) -> None:
        if self._where == (group, port) or self._stopped:
            return
        self._close_socket()
        sock = FanoutSocket(group, self.options.interface, self._datagram)
        listen = self.options.listen or self._listen_multicast
        try:
            self._port = listen(port, sock)
        except error.CannotListenError as e:
            self.drops["cannot-listen"] += 1
            self.report(
                "Cannot listen for multicast on UDP port %d (%s);"
                " receiving %s over TLS." % (port, e.socketError or e, self.channel)
            )
            return
        self.socket = sock
        self._where = (group, port)
        sock.ready.addCallback(self._joined, sock)

    def _listen_multicast(self, port: int, sock: FanoutSocket) -> Any:
        return self.reactor.listenMulticast(
            port, sock, interface="", listenMultiple=True
        )

    def _joined(self, ok: bool, sock: FanoutSocket) -> bool:
        if not ok and sock is self.socket:
            self.drops["cannot-join"] += 1
            self.report(
                "Cannot join multicast group %s on %s (%s); receiving"
                " %s over TLS.  Is --fanout-interface an address of"
                " this machine?"
                % (sock.group, sock.interface, sock.failure_reason, self.channel)
            )
        return ok

    def _close_socket(self) -> None:
        port, self._port = self._port, None
        self.socket = None
        self._where = None
        if port is not None:
            self._closing = [d for d in self._closing if not d.called]
            self._closing.append(maybeDeferred(port.stopListening))


def _line_of(message: Message) -> bytes:
    """A parsed line back as bytes without CR LF, as the reorder buffer
    keeps events (the session parses it again when it is shown)."""
    return format_line(
        message.command, *message.params, prefix=message.prefix, tags=message.tags
    ).rstrip(b"\r\n")
