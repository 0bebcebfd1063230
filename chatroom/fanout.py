# -*- test-case-name: tests.test_fanout_host -*-
"""The host's edge of multicast fan-out: one sender per room, one socket.

The decisions are the pure L{chatroom.core.fanout_sender.FanoutSender}'s
(keys and rotation, packing, pacing, heartbeats, repair aggregation); this
module calls it at the moments the protocol names and performs the actions
it returns: C{FANOUT} lines over a member's own TLS connection, datagrams
to the group through L{FanoutSocket}, and repairs read from the history
store.  The wire format is C{docs/protocol-fanout.rst}.

Datagrams always leave through an explicit interface (C{--fanout-interface},
127.0.0.1 by default, like discovery): leaving the choice to the kernel
would send them out of the machine's default route.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any, Iterable

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from chatroom.core.fanout import MemberRequest, RoomIdentity, format_ranges
from chatroom.core.fanout_sender import (
    FanoutSender,
    SendDatagram,
    SendEvents,
    SendKey,
    SendMode,
    SendRepair,
)
from chatroom.core.ircline import format_line
from chatroom.wellknown import (
    FANOUT_CAPABILITY,
)
from chatroom.core.room import MESSAGE_TAGS, SERVER_TIME, Delivery, Room

#: The variant of the lines datagrams carry (message-tags and server-time).
DATAGRAM_VARIANT = MESSAGE_TAGS | SERVER_TIME


# Linux: do not deliver datagrams of groups this socket did not join.
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)


class FanoutSocket(DatagramProtocol):
    """The host's sending socket: datagrams to C{group}:C{port}, out of
    C{interface} only, with C{ttl} router hops.

    @ivar counts: C{sent}, C{bytes} and C{send-errors}, for the operator.
    """

    log = Logger()

    def __init__(self, interface: str, group: str, port: int, ttl: int) -> None:
        if not interface:
            raise ValueError("The fan-out interface must be an explicit address")
        ipaddress.IPv4Address(interface)
        self.interface = interface
        self.group = group
        self.port = port
        self.ttl = ttl
        self.counts: dict[str, int] = {"sent": 0, "bytes": 0, "send-errors": 0}
        self.ready: defer.Deferred[None] = defer.Deferred()

    def startProtocol(self) -> None:
        """Send out of the fan-out interface only, with the TTL; loop back
        so members on this machine hear the host."""
        transport = self.transport
        try:
            transport.getHandle().setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        except OSError:
            pass
        d = defer.maybeDeferred(transport.setOutgoingInterface, self.interface)
        d.addCallback(lambda _: transport.setTTL(self.ttl))
        d.addCallback(lambda _: transport.setLoopbackMode(True))
        d.addCallbacks(lambda _: self.ready.callback(None), self.ready.errback)

    def listen(self, reactor: Any) -> Any:
        """Bind the socket on the fan-out interface (any free port) and set
        it up (L{startProtocol}: outgoing interface, TTL, loopback).

        @return: the listening port.
        @raise CannotListenError: the interface address is not this
            machine's.
        """
        return reactor.listenMulticast(0, self, interface=self.interface)

    def send(self, data: bytes) -> None:
        """Send one datagram to the group; a failure is counted, not raised."""
        if self.transport is None:
            self.counts["send-errors"] += 1
            return
        try:
            self.transport.write(data, (self.group, self.port))
        except OSError:
            self.counts["send-errors"] += 1
            return
        self.counts["sent"] += 1
        self.counts["bytes"] += len(data)


class HostFanout:
    """Fan-out for every room of one host.

    @param host: the L{chatroom.host.RoomHost}.
    @param private_key: the host's Ed25519 private key (its public half is
        C{Q}).
    @param q: the raw 32-byte public key.
    @param sender: where datagrams go: a L{FanoutSocket} (anything with
        C{send(bytes)}, C{group} and C{port}).
    @param random_bytes: C{os.urandom}, or a fake in tests.
    """

    def __init__(
        self,
        host: Any,
        private_key: Any,
        q: bytes,
        sender: Any,
        random_bytes: Any = os.urandom,
    ) -> None:
        self.host = host
        self.clock = host.clock
        self._private_key = private_key
        self._q = q
        self._socket = sender
        self._random_bytes = random_bytes
        self._senders: dict[str, FanoutSender] = {}
        self._timer: Any = None

    def sender_for(self, room: Room) -> FanoutSender:
        """The room's sender, made on first use."""
        sender = self._senders.get(room.key)
        if sender is None:
            sender = self._senders[room.key] = FanoutSender(
                self._private_key,
                RoomIdentity(self._q, room.channel[1:]),
                self._socket.group,
                self._socket.port,
                self._random_bytes,
                last_seq=room.next_seq - 1,
            )
        return sender

    # What the host and the commands tell us

    def member_joined(self, member: Any, room: Room, reply: Any = None) -> None:
        """C{member} (with the capability) is in C{room}: send it the key,
        as part of C{reply} (after the C{JOIN} and names) when given."""
        if FANOUT_CAPABILITY not in member.caps:
            return
        for action in self.sender_for(room).member_joined(member, self.clock.seconds()):
            if reply is not None and isinstance(action, SendKey):
                reply.send("FANOUT", *action.grant.to_params())
            else:
                self._perform(room, [action])
        self._schedule()

    def member_left(self, member: Any, room: Room, delivery: Delivery) -> None:
        """C{member} left C{room} with C{delivery} (its PART, QUIT or KICK),
        not yet flushed: the key changes from that event on."""
        sender = self._senders.get(room.key)
        if sender is not None and delivery.event.seq is not None:
            self._perform(room, sender.member_left(member, delivery.event.seq))
            self._schedule()

    def forget(self, member: Any, room: Room) -> None:
        """C{member} is replaced without a leave event (a ghost taken
        over): the key changes from the room's next event on."""
        sender = self._senders.get(room.key)
        if sender is not None:
            self._perform(room, sender.member_left(member, room.next_seq))
            self._schedule()

    def request(self, member: Any, room: Room, request: MemberRequest) -> bool:
        """A C{FANOUT} line from C{member}; C{False} when it holds no key
        for C{room} (the caller answers C{FAIL ... NOT_AVAILABLE})."""
        sender = self._senders.get(room.key)
        if sender is None or member not in sender.members:
            return False
        self._perform(room, sender.request(member, request, self.clock.seconds()))
        self._schedule()
        return True

    def turn(self, deliveries: Iterable[Delivery]) -> None:
        """The turn's deliveries are stored and delivered over TLS: give
        each room's sender its numbered events."""
        if not self._senders:
            return
        by_room: dict[str, list[tuple[int, bytes]]] = {}
        for delivery in deliveries:
            event = delivery.event
            if event.seq is not None and event.room in self._senders:
                by_room.setdefault(event.room, []).append(
                    (event.seq, event.line(DATAGRAM_VARIANT))
                )
        now = self.clock.seconds()
        for key, sender in list(self._senders.items()):
            room = self.host.rooms.get(key)
            if room is None:
                del self._senders[key]
                continue
            self._perform(room, sender.flush(now, by_room.get(key, ())))
        self._schedule()

    def stop(self) -> None:
        """Cancel the timer (the host is stopping)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # Doing what the senders say

    def _perform(self, room: Room, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, SendDatagram):
                self._socket.send(action.data)
            elif isinstance(action, SendKey):
                action.member.send("FANOUT", *action.grant.to_params())
            elif isinstance(action, SendMode):
                room.set_multicast(action.member, action.change.multicast)
                action.member.send("FANOUT", *action.change.to_params())
            elif isinstance(action, SendEvents):
                data = b"".join(line + b"\r\n" for _, line in action.events)
                for member in action.members:
                    member.deliver(data)
            elif isinstance(action, SendRepair):
                self._repair(room, action)

    def _repair(self, room: Room, action: SendRepair) -> None:
        lines = [line + b"\r\n" for _, line in action.events]
        store = self.host.store
        for first, last in action.uncached:
            for event in store.between(
                room.key, first - 1, last + 1, last - first + 1, False, False
            ):
                lines.append(event.line(DATAGRAM_VARIANT))
        lines.append(
            format_line(
                "FANOUT",
                room.channel,
                "REPAIRED",
                format_ranges(action.ranges),
                prefix=self.host.server_name,
            )
        )
        action.member.deliver(b"".join(lines))

    def _schedule(self) -> None:
        """One timer for every room's sender, at the earliest C{wake_at};
        left alone when it is already set for that time (this runs every
        turn)."""
        wake = [s.wake_at for s in self._senders.values() if s.wake_at is not None]
        due = min(wake) if wake else None
        timer = self._timer
        if timer is not None and timer.active():
            if due is not None and timer.getTime() == due:
                return
            timer.cancel()
        self._timer = None
        if due is not None:
            self._timer = self.clock.callLater(
                max(0.0, due - self.clock.seconds()), self._wake
            )

    def _wake(self) -> None:
        self._timer = None
        self.turn(())
