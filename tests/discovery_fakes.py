"""Fakes for discovery tests: a multicast transport and a tiny routed network.

:class:`FakeMulticastTransport` records what a protocol does to its socket
and refuses the two mistakes that send real traffic to the wrong place:
joining a group without an interface and sending multicast before choosing
the outgoing interface.  :class:`FakeNetwork` delivers datagrams between
fake transports; each transport sits on a numbered segment, and a multicast
datagram with TTL ``t`` crosses at most ``t - 1`` routers, so it reaches
segment ``s`` from segment ``r`` only if ``abs(s - r) < t``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import DatagramProtocol


class FakeSocket:
    """Records setsockopt calls."""

    def __init__(self) -> None:
        self.options: list[tuple[int, int, int]] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        """Record one option."""
        self.options.append((level, option, value))


def is_multicast(host: str) -> bool:
    """True for an IPv4 multicast address."""
    return 224 <= int(host.split(".")[0]) <= 239


class FakeMulticastTransport:
    """A stand-in for a Twisted ``MulticastPort``.

    ``written`` holds ``(data, address, ttl)`` for every datagram sent.
    """

    def __init__(
        self,
        network: FakeNetwork | None = None,
        address: tuple[str, int] = ("10.0.0.1", 40000),
        segment: int = 0,
    ) -> None:
        self.network = network
        self.address = address
        self.segment = segment
        self.protocol: DatagramProtocol | None = None
        self.written: list[tuple[bytes, tuple[str, int], int]] = []
        self.ttl = 1
        self.outgoing_interface: str | None = None
        self.loopback: bool | None = None
        self.groups: list[tuple[str, str]] = []
        self.handle = FakeSocket()
        self.listening = True
        self.fail_writes = False

    def attach(self, protocol: DatagramProtocol) -> None:
        """Connect ``protocol`` to this transport (calls startProtocol)."""
        self.protocol = protocol
        if self.network is not None:
            self.network.transports.append(self)
        protocol.makeConnection(self)  # type: ignore[arg-type]

    def write(self, data: bytes, address: tuple[str, int]) -> None:
        """Record (and queue on the network) one datagram."""
        if not self.listening:
            raise AssertionError("write after stopListening")
        if is_multicast(address[0]) and self.outgoing_interface is None:
            raise AssertionError("multicast sent before setOutgoingInterface")
        if self.fail_writes:
            raise OSError(101, "Network is unreachable")
        self.written.append((data, address, self.ttl))
        if self.network is not None:
            self.network.queue.append((self, data, address, self.ttl))

    def setOutgoingInterface(self, address: str) -> Deferred[int]:
        """Record the outgoing interface."""
        self.outgoing_interface = address
        return succeed(1)

    def setTTL(self, ttl: int) -> None:
        """Record the multicast TTL."""
        self.ttl = ttl

    def getTTL(self) -> int:
        """Return the multicast TTL."""
        return self.ttl

    def setLoopbackMode(self, mode: bool) -> None:
        """Record the loopback mode."""
        self.loopback = bool(mode)

    def getLoopbackMode(self) -> bool:
        """Return the loopback mode."""
        return bool(self.loopback)

    def joinGroup(self, address: str, interface: str = "") -> Deferred[int]:
        """Record a join; refuse one without an explicit interface."""
        if not interface:
            raise AssertionError("joinGroup without an interface")
        self.groups.append((address, interface))
        return succeed(1)

    def leaveGroup(self, address: str, interface: str = "") -> Deferred[int]:
        """Record leaving a group."""
        self.groups.remove((address, interface))
        return succeed(1)

    def getHandle(self) -> FakeSocket:
        """Return the fake socket."""
        return self.handle

    def getHost(self) -> IPv4Address:
        """Return the bound address."""
        return IPv4Address("UDP", *self.address)

    def stopListening(self) -> None:
        """Stop; the protocol's stopProtocol is called."""
        if self.listening:
            self.listening = False
            if self.network is not None and self in self.network.transports:
                self.network.transports.remove(self)
            assert self.protocol is not None
            self.protocol.doStop()

    loseConnection = stopListening


class FakeNetwork:
    """Delivers datagrams between fake transports when :meth:`flush` is
    called, honouring multicast TTL across numbered segments."""

    def __init__(self) -> None:
        self.transports: list[FakeMulticastTransport] = []
        self.queue: list[
            tuple[FakeMulticastTransport, bytes, tuple[str, int], int]
        ] = []
        self.delivered: list[tuple[bytes, tuple[str, int], tuple[str, int]]] = []

    def flush(self) -> int:
        """Deliver every queued datagram (and any sent in reply); return
        how many deliveries were made."""
        count = 0
        while self.queue:
            sender, data, address, ttl = self.queue.pop(0)
            for receiver in list(self.transports):
                if receiver.protocol is None or not receiver.listening:
                    continue
                if is_multicast(address[0]):
                    joined = any(g == address[0] for g, _ in receiver.groups)
                    if not joined or receiver.address[1] != address[1]:
                        continue
                    if abs(receiver.segment - sender.segment) >= ttl:
                        continue
                elif receiver.address != address:
                    continue
                self.delivered.append((data, sender.address, receiver.address))
                receiver.protocol.datagramReceived(data, sender.address)
                count += 1
        return count


def attach_all(*pairs: Any) -> None:
    """Attach each (transport, protocol) pair."""
    for transport, protocol in pairs:
        transport.attach(protocol)
