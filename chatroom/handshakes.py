# -*- test-case-name: tests.test_handshakes -*-
"""A cap on TLS handshakes in progress, globally and per address.

A TCP connection that never finishes its TLS handshake holds a file
descriptor and a client slot until the handshake deadline (10 s) closes it.
A slowloris of such half-open handshakes from many addresses could keep
every slot busy.  L{HandshakeLimitFactory} wraps the IRC factory (inside
the TLS layer, in the style of L{twisted.protocols.policies}) and counts
connections from accept to C{handshakeCompleted}:

- per address (IPv6 grouped per /64, loopback exempt, like every per-address
  limit of the host): a connection over the cap is closed at once, before
  any byte is read;
- globally: at the cap the host stops accepting on its TLS ports until a
  handshake completes or fails; the kernel's listen queue holds the
  connections that arrive meanwhile, so a burst of honest clients waits
  rather than being refused.

The wrapper also shows the protocol inside an IPv4 peer on a dual-stack
socket (C{::ffff:192.0.2.1}, RFC 4291 section 2.5.5.2, as the systemd unit's
C{[::]} socket gives) as the IPv4 address it is, so that every per-address
count of the host sees one address per IPv4 client rather than one /64 for
all of them.

Once the handshake completed the wrapper has no more work, so it steps out
of the chain: the TLS protocol below then delivers straight to the
protocol above, which writes straight to the TLS protocol (no wrapper kept
per member, no extra call per read and write).  The protocol above reads
the peer's address when its connection is made, while the wrapper still
unmaps it (L{chatroom.ircserver.IRCConnection.address}).  A plain-text
connection has no handshake: the wrapper stays as a pass-through for its
life, so that its protocol sees the unmapped address too.

Each cap is logged once when it trips (again only after a minute without
tripping); every refusal and pause is counted for the operator.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from OpenSSL import SSL
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHandshakeListener, ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols import policies
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

from chatroom.core.addresses import address_key, unmapped

#: A cap that tripped is logged again only after this many seconds without
#: tripping, so a sustained attack gives one log line, not one per attempt.
LOG_QUIET_SECONDS = 60.0


@attrs.frozen
class HandshakeLimits:
    """How many TLS handshakes may be in progress.

    @ivar in_progress: at most this many at once on the whole host
        (C{--max-handshakes}).
    @ivar per_address: at most this many at once from one address, IPv6
        grouped per /64, loopback exempt (C{--max-handshakes-per-address}).
    """

    in_progress: int = 64
    per_address: int = 3


@implementer(IHandshakeListener)
class HandshakeLimitProtocol(policies.ProtocolWrapper):
    """Counts its connection as a handshake in progress until it completes.

    Over TLS it passes C{handshakeCompleted} on to the wrapped protocol,
    after stepping out of the chain (L{_step_out}); without TLS it is a
    plain pass-through and is not counted.
    """

    factory: HandshakeLimitFactory
    _key: str | None = None
    _counted = False
    _refused = False

    def makeConnection(self, transport: Any) -> None:
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        if ISSLTransport.providedBy(transport):
            self._key = address_key(getattr(transport.getPeer(), "host", ""))
            if not self.factory.handshake_started(self._key):
                self._refused = True
                transport.abortConnection()
                return
            self._counted = True
        self.factory.registerProtocol(self)
        self.wrappedProtocol.makeConnection(self)

    def getPeer(self) -> Any:
        """The peer's address, an IPv4-mapped IPv6 one as plain IPv4."""
        peer = self.transport.getPeer()
        host = getattr(peer, "host", None)
        if isinstance(peer, IPv6Address) and host and unmapped(host) != host:
            return IPv4Address(peer.type, unmapped(host), peer.port)
        return peer

    def _finished(self) -> None:
        if self._counted:
            self._counted = False
            self.factory.handshake_finished(self._key)

    def handshakeCompleted(self) -> None:
        self._finished()
        inner = self.wrappedProtocol
        if not self._refused:
            self._step_out()
        if IHandshakeListener.providedBy(inner):
            inner.handshakeCompleted()

    def _step_out(self) -> None:
        """Leave the chain: the transport below (a TLS protocol, a
        L{policies.ProtocolWrapper} whose public C{wrappedProtocol} is this
        wrapper) is joined to the protocol above directly.

        The protocol above is given its new transport through its
        C{replace_transport(transport)} method when it has one (an
        L{chatroom.ircserver.IRCConnection} also moves its line guard),
        otherwise its C{transport} attribute is set.  The wrapping factory
        forgets this wrapper.  Below anything but a wrapper of this one
        (a test's C{StringTransport}), it stays a pass-through.
        """
        below = self.transport
        inner = self.wrappedProtocol
        if inner is None or getattr(below, "wrappedProtocol", None) is not self:
            return
        below.wrappedProtocol = inner
        replace = getattr(inner, "replace_transport", None)
        if replace is not None:
            replace(below)
        else:
            inner.transport = below
        self.factory.unregisterProtocol(self)

    def connectionLost(self, reason: Any) -> None:
        if self._counted and isinstance(reason, Failure) and reason.check(SSL.Error):
            # The TLS handshake failed: a client that does not speak TLS
            # (plain IRC on the TLS port), no common version or suite, a
            # malformed hello.  Counted so that the operator sees it.
            self.factory.count("handshake-failures")
        self._finished()
        if not self._refused:
            super().connectionLost(reason)


class HandshakeLimitFactory(policies.WrappingFactory):
    """Wraps a server factory to cap the TLS handshakes in progress.

    @param wrappedFactory: the factory of the real protocol (the IRC one).
    @param limits: the L{HandshakeLimits}.
    @param clock: an C{IReactorTime}, for spacing the log lines.
    @param count: called with a counter name for each refusal, pause and
        failed handshake (C{"handshakes-refused-per-address"},
        C{"handshakes-paused"}, C{"handshake-failures"}).
    @ivar in_progress: handshakes now in progress.
    """

    protocol = HandshakeLimitProtocol
    log = Logger()
    # The wrapped factory already logs its start and stop.
    noisy = False

    def __init__(
        self,
        wrappedFactory: Any,
        limits: HandshakeLimits,
        clock: Any,
        count: Callable[[str], None] = lambda name: None,
    ) -> None:
        super().__init__(wrappedFactory)
        self.limits = limits
        self.clock = clock
        self.count = count
        self.in_progress = 0
        self.per_address: dict[str, int] = {}
        self._ports: list[Any] = []
        self._paused = False
        self._last_logged: dict[str, float] = {}

    # The ports whose accepting pauses at the global cap.

    def add_port(self, port: Any) -> None:
        """Pause and resume accepting on C{port} (an C{IListeningPort} that
        is also an C{IPushProducer}, as TCP ports are) with the global cap."""
        self._ports.append(port)
        if self._paused:
            port.pauseProducing()

    def remove_port(self, port: Any) -> None:
        """Stop managing C{port} (it stopped listening)."""
        if port in self._ports:
            self._ports.remove(port)

    # Accounting

    def handshake_started(self, key: str | None) -> bool:
        """A TLS connection from C{key} was accepted; C{False} to refuse it."""
        if key is not None:
            held = self.per_address.get(key, 0)
            if held >= self.limits.per_address:
                self.count("handshakes-refused-per-address")
                self._log_trip(
                    "per-address",
                    "Closing connections from {address}: {held} TLS handshakes "
                    "from it are in progress (--max-handshakes-per-address)",
                    address=key,
                    held=held,
                )
                return False
            self.per_address[key] = held + 1
        self.in_progress += 1
        if self.in_progress >= self.limits.in_progress and not self._paused:
            self._paused = True
            self.count("handshakes-paused")
            self._log_trip(
                "global",
                "{held} TLS handshakes in progress: not accepting new "
                "connections until one completes (--max-handshakes)",
                held=self.in_progress,
            )
            for port in self._ports:
                port.pauseProducing()
        return True

    def handshake_finished(self, key: str | None) -> None:
        """A counted handshake completed, failed or its connection closed."""
        self.in_progress -= 1
        if key is not None:
            left = self.per_address[key] - 1
            if left:
                self.per_address[key] = left
            else:
                del self.per_address[key]
        if self._paused and self.in_progress < self.limits.in_progress:
            self._paused = False
            for port in self._ports:
                port.resumeProducing()

    @property
    def paused(self) -> bool:
        """Whether accepting is paused at the global cap."""
        return self._paused

    def _log_trip(self, cap: str, format: str, **fields: Any) -> None:
        now = self.clock.seconds()
        last = self._last_logged.get(cap)
        self._last_logged[cap] = now
        if last is None or now - last >= LOG_QUIET_SECONDS:
            self.log.warn(format, **fields)
