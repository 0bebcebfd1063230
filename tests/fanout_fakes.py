"""A room host that offers multicast delivery, in memory, for client tests.

L{FanoutNetwork} connects real L{chatroom.client.session.RoomSession}s (and
their real L{RoomClientProtocol} and L{MulticastDelivery}) to
L{FanoutRoomHost}, a small IRC server that speaks just enough of the room
protocol (CAP, registration, JOIN, PRIVMSG, CHATHISTORY, QUIT) and the
C{FANOUT} lines of C{docs/protocol-fanout.rst}, with the real pure host
side, L{chatroom.core.fanout_sender.FanoutSender} (keys, rotation,
packing, pacing, heartbeats, NACK aggregation), signing with the host key
of the protocol document's test vectors.  Datagrams travel through L{Air}:
the fan-out group on a fake link, where a test decides which datagrams are
lost.  TLS connections are C{twisted.test.iosim} pumps; one
C{task.Clock} drives everything.

The real host edge lives in C{chatroom/host.py}; this fake exists so that
the client's side can be tested against the protocol document alone.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from twisted.internet import defer, protocol
from twisted.internet.task import Clock
from twisted.test import iosim

from chatroom.client.protocol import CLIENT_CAPS
from chatroom.core.fanout import (
    CAPABILITY,
    MemberRequest,
    RoomIdentity,
    format_ranges,
)
from chatroom.core.fanout_sender import FanoutSender
from chatroom.core.errors import ParseError
from chatroom.core.ircline import (
    LineBuffer,
    add_tags,
    format_line,
    parse_line,
    server_time,
)
from chatroom.core.names import casefold, parse_msgid

from .discovery_fakes import FakeMulticastTransport
from .memory_network import pump_between

HOST_KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
"""The host key of the test vectors in protocol-fanout.rst."""
Q = HOST_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
GROUP = "239.255.67.70"
PORT = 47668
EPOCH_1_KEY = bytes(range(32))
"""The documented test key of epoch 1."""

SERVER = "fakehost.chatroom"
#: What the fake host offers: everything the client asks for, and fan-out.
OFFERED_CAPS = CLIENT_CAPS + (CAPABILITY,)


# -- the fan-out group ---------------------------------------------------------


class Air:
    """The fan-out group on a fake link.

    Datagrams the host sends are queued and reach, on L{flush}, every fake
    socket that is listening on the port and joined the group on an
    explicit interface, unless C{lose(index, data)} says this one is lost
    (C{index} counts every datagram sent, from 0).  L{cut} loses
    everything (the multicast route is gone); C{duplicate(index, data)}
    delivers one twice; L{reorder}, a C{random.Random}, shuffles each
    flush.

    @ivar sent: every datagram sent, in order.
    @ivar lost: indexes of the datagrams lost.
    """

    def __init__(self) -> None:
        self.sockets: list[FakeMulticastTransport] = []
        self.sent: list[bytes] = []
        self.lost: list[int] = []
        self.queue: list[tuple[int, bytes]] = []
        self.lose: Callable[[int, bytes], bool] = lambda index, data: False
        self.duplicate: Callable[[int, bytes], bool] = lambda index, data: False
        self.reorder: random.Random | None = None
        self.cut = False

    def listen(self, port: int, proto: protocol.DatagramProtocol) -> Any:
        """For L{FanoutOptions.listen}: a fake socket bound to C{port}."""
        transport = FakeMulticastTransport(address=("0.0.0.0", port))
        transport.attach(proto)
        self.sockets.append(transport)
        return transport

    def send(self, data: bytes) -> None:
        """The host sends one datagram to the group."""
        index = len(self.sent)
        self.sent.append(data)
        if self.cut or self.lose(index, data):
            self.lost.append(index)
            return
        self.queue.append((index, data))
        if self.duplicate(index, data):
            self.queue.append((index, data))

    def flush(self) -> bool:
        """Deliver what is queued (shuffled, with L{reorder}); True if
        anything was."""
        queue, self.queue = self.queue, []
        if self.reorder is not None:
            self.reorder.shuffle(queue)
        for _, data in queue:
            for sock in self.sockets:
                if (
                    sock.listening
                    and sock.address[1] == PORT
                    and any(g == GROUP and i for g, i in sock.groups)
                ):
                    assert sock.protocol is not None
                    sock.protocol.datagramReceived(data, ("10.0.0.1", 40000))
        return bool(queue)


# -- the IRC side --------------------------------------------------------------


class HostConnection(protocol.Protocol):
    """One client connection to L{FanoutRoomHost}."""

    def __init__(self, host: FanoutRoomHost) -> None:
        self.host = host
        self.lines = LineBuffer()
        self.caps: set[str] = set()
        self.nick: str | None = None
        self.user = False
        self.cap_open = False
        self.registered = False
        self.joined = False
        self.gone = False
        self.tls_events: list[int] = []
        """Sequence numbers written to this connection (live or repair)."""

    def write_line(self, line: bytes) -> None:
        if not self.gone and self.transport is not None:
            self.transport.write(line + b"\r\n")

    def reply(self, command: str, *params: str) -> None:
        self.write_line(format_line(command, *params, prefix=SERVER).rstrip(b"\r\n"))

    def write_event(self, seq: int, line: bytes) -> None:
        self.tls_events.append(seq)
        self.write_line(line)

    def dataReceived(self, data: bytes) -> None:
        for raw in self.lines.feed(data):
            self.line_received(parse_line(raw))

    def line_received(self, message: Any) -> None:
        command, params = message.command, message.params
        host = self.host
        if command == "CAP" and params[:1] == ("LS",):
            self.cap_open = True
            self.reply("CAP", "*", "LS", " ".join(OFFERED_CAPS))
        elif command == "CAP" and params[:1] == ("REQ",):
            asked = params[-1].split()
            if CAPABILITY in asked and not {
                "message-tags",
                "server-time",
                "echo-message",
            } <= (self.caps | set(asked)):
                self.reply("CAP", "*", "NAK", params[-1])
            else:
                self.caps.update(asked)
                self.reply("CAP", "*", "ACK", params[-1])
        elif command == "CAP" and params[:1] == ("END",):
            self.cap_open = False
            self.maybe_welcome()
        elif command == "NICK":
            self.nick = params[0]
            self.maybe_welcome()
        elif command == "USER":
            self.user = True
            self.maybe_welcome()
        elif command == "PING":
            self.reply("PONG", SERVER, params[-1])
        elif command == "JOIN":
            host.join(self)
        elif command == "PRIVMSG":
            host.post(
                self,
                "PRIVMSG",
                host.channel,
                params[-1],
                label=message.tags.get("label"),
            )
        elif command == "CHATHISTORY":
            host.chathistory(self, params)
        elif command == "FANOUT":
            try:
                request = MemberRequest.from_params(params)
            except ParseError:
                self.reply(
                    "FAIL", "FANOUT", "INVALID_PARAMS", host.channel, "Bad request"
                )
                return
            host.requests.append((self.nick, request))
            host.perform(host.sender.request(self, request, host.clock.seconds()))
        elif command == "QUIT":
            host.leave(self, "Quit: " + (params[-1] if params else ""))
            self.transport.loseConnection()

    def maybe_welcome(self) -> None:
        if self.registered or self.cap_open or not self.nick or not self.user:
            return
        self.registered = True
        self.reply("001", self.nick, "Welcome")

    def connectionLost(self, reason: Any = None) -> None:
        if not self.gone:
            self.host.leave(self, "Connection lost")


class FanoutRoomHost:
    """One room, its history, its members, and fan-out by a
    L{FanoutSender}.

    Events are numbered in order; each turn's events go to TLS members at
    once and to the group at L{end_turn} (after the "commit"), as the real
    host does.  A multicast member gets no events over TLS except its own
    labelled echo and repairs.
    """

    def __init__(
        self,
        clock: Clock,
        room: str = "lobby",
        keys: Callable[[int], bytes] | None = None,
    ) -> None:
        self.clock = clock
        self.room = room
        self.channel = "#" + room
        self.identity = RoomIdentity(Q, room)
        if keys is None:
            source = iter([EPOCH_1_KEY])
            rng = random.Random(7)

            def keys(size: int) -> bytes:
                return next(source, None) or rng.randbytes(size)

        self.sender = FanoutSender(HOST_KEY, self.identity, GROUP, PORT, keys)
        self.air = Air()
        self.history: list[tuple[int, bytes]] = []
        self.members: list[HostConnection] = []
        self.requests: list[tuple[str | None, MemberRequest]] = []
        self.history_requests: list[tuple[str | None, tuple[str, ...]]] = []
        self.turn: list[tuple[int, bytes]] = []
        self.seq = 0
        self._timer: Any = None

    def post(
        self,
        conn: HostConnection | None,
        command: str,
        *params: str,
        label: str | None = None,
        nick: str | None = None,
    ) -> int:
        """Number, store and send an event from C{conn} (or C{nick})."""
        nick = conn.nick if conn is not None else nick
        self.seq += 1
        seq = self.seq
        line = format_line(
            command,
            *params,
            prefix="%s!~%s@127.0.0.1" % (nick, nick),
            tags={
                "time": server_time(int(self.clock.seconds() * 1000)),
                "msgid": "%s:%d" % (casefold(self.room), seq),
            },
        ).rstrip(b"\r\n")
        self.history.append((seq, line))
        for member in list(self.members):
            if member is conn and label is not None:
                member.write_event(seq, add_tags(line, {"label": label}))
            elif not self.sender.is_multicast(member):
                member.write_event(seq, line)
        self.turn.append((seq, line))
        return seq

    def say(self, nick: str, text: str) -> int:
        """Someone not connected here (on another link) says something."""
        return self.post(None, "PRIVMSG", self.channel, text, nick=nick)

    def join(self, conn: HostConnection) -> None:
        conn.joined = True
        self.members.append(conn)
        self.post(conn, "JOIN", self.channel)
        conn.reply(
            "353", conn.nick, "=", self.channel, " ".join(m.nick for m in self.members)
        )
        conn.reply("366", conn.nick, self.channel, "End of /NAMES list.")
        if CAPABILITY in conn.caps:
            self.perform(self.sender.member_joined(conn, self.clock.seconds()))

    def leave(self, conn: HostConnection, reason: str) -> None:
        if conn.gone:
            return
        conn.gone = True
        if conn in self.members:
            self.members.remove(conn)
            seq = self.post(conn, "QUIT", reason)
            self.sender.member_left(conn, seq)

    def chathistory(self, conn: HostConnection, params: tuple[str, ...]) -> None:
        self.history_requests.append((conn.nick, params))
        sub, limit = params[0], int(params[-1])
        if sub == "LATEST":
            events = self.history[-limit:]
        else:
            parsed = parse_msgid(params[2].partition("=")[2])
            after = parsed[1] if parsed else 0
            events = [e for e in self.history if e[0] > after][:limit]
        ref = "h%d" % (self.clock.seconds() * 1000 + len(self.history),)
        conn.reply("BATCH", "+" + ref, "chathistory", self.channel)
        for seq, line in events:
            conn.write_line(add_tags(line, {"batch": ref}))
        conn.reply("BATCH", "-" + ref)

    def end_turn(self) -> bool:
        """The turn's commit is done: fan it out.  True if anything moved."""
        events, self.turn = self.turn, []
        self.perform(self.sender.flush(self.clock.seconds(), events))
        self._rearm()
        return bool(events)

    def _rearm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        wake = self.sender.wake_at
        if wake is not None:
            self._timer = self.clock.callLater(
                max(0.0, wake - self.clock.seconds()), self.end_turn
            )

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()

    def perform(self, actions: list[Any]) -> None:
        for action in actions:
            kind = type(action).__name__
            if kind == "SendKey":
                action.member.reply("FANOUT", *action.grant.to_params())
            elif kind == "SendMode":
                action.member.reply("FANOUT", *action.change.to_params())
            elif kind == "SendDatagram":
                self.air.send(action.data)
            elif kind == "SendEvents":
                for member in action.members:
                    for seq, line in action.events:
                        member.write_event(seq, line)
            elif kind == "SendRepair":
                for seq, line in action.events:
                    action.member.write_event(seq, line)
                for first, last in getattr(action, "uncached", ()):
                    for seq, line in self.history:
                        if first <= seq <= last:
                            action.member.write_event(seq, line)
                action.member.reply(
                    "FANOUT", self.channel, "REPAIRED", format_ranges(action.ranges)
                )
            else:
                raise AssertionError("unknown action %r" % (action,))


# -- the network ---------------------------------------------------------------


class _Endpoint:
    def __init__(self, network: FanoutNetwork) -> None:
        self.network = network

    def connect(self, factory: protocol.Factory) -> defer.Deferred[Any]:
        network = self.network
        client = factory.buildProtocol(None)
        server = HostConnection(network.host)
        pump = pump_between(client, server, 40000 + len(network.pumps), network.clock)
        network.pumps.append(pump)
        return defer.succeed(client)


class FanoutNetwork:
    """The fake host, its TLS links and its multicast group, on one clock."""

    def __init__(self, room: str = "lobby") -> None:
        self.clock = Clock()
        self.clock.advance(1764000000)
        self.host = FanoutRoomHost(self.clock, room)
        self.air = self.host.air
        self.pumps: list[iosim.IOPump] = []
        self.air_first = False
        """End the host's turn and deliver its datagrams before moving TLS
        bytes (datagrams overtake the TLS lines of the same events)."""
        self.tls_stalled = False
        """Move no TLS bytes (a TCP retransmission on a lossy link) while
        datagrams still arrive."""

    def endpoint_for(self, address: str, creator: Any) -> _Endpoint:
        """For C{RoomSession(endpoint_for=...)}."""
        return _Endpoint(self)

    def settle(self, limit: int = 10000) -> None:
        """Run what is due now: TLS bytes, the host's turn, datagrams."""
        for _ in range(limit):
            self.clock.advance(0)
            moved = False
            if self.air_first and (self.host.end_turn() | self.air.flush()):
                moved = True
            for pump in self.pumps if not self.tls_stalled else ():
                if pump.pump(advanceClock=False):
                    moved = True
            if self.host.end_turn():
                moved = True
            if self.air.flush():
                moved = True
            if not moved and not any(
                call.getTime() <= self.clock.seconds()
                for call in self.clock.getDelayedCalls()
            ):
                return
        raise AssertionError("the network did not settle in %d steps" % (limit,))

    def advance(self, seconds: float, step: float = 0.01) -> None:
        """Let C{seconds} pass in small steps, settling after each."""
        self.settle()
        end = self.clock.seconds() + seconds
        while self.clock.seconds() < end - 1e-9:
            self.clock.advance(min(step, end - self.clock.seconds()))
            self.settle()
