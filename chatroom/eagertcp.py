# -*- test-case-name: tests.test_eagertcp -*-
"""A TCP listener whose connections send at once when nothing is queued.

Twisted's TCP transport queues every write and registers the socket for
writability (C{epoll_ctl}); the reactor's next turn sends it (C{send}) and
unregisters (C{epoll_ctl} again).  A room host writes once per member per
turn, almost always to a socket with room in its kernel buffer, so that
round trip costs two system calls and a reactor turn per member and event
batch, and holds every member's output in the process until the turn ends.
L{EagerServer} sends a write whose connection has nothing queued in the same
call (one C{send}); only what the kernel does not take is queued, the usual
way, so order, flow control (a streaming producer is paused past Twisted's
C{bufferSize}) and error handling stay Twisted's.

Measured with C{bench/run.py} (docs/benchmarks.rst, "The TLS write path"),
recorded in docs/decisions.rst.  This relies on four attributes of
L{twisted.internet.tcp.Connection} that are not public API (C{dataBuffer},
C{offset}, C{_tempDataLen}, C{_writeDisconnected}) and on
C{writeSomeData}; C{tests/test_eagertcp.py} fails if their meaning changes.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, tcp
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer


class EagerServer(tcp.Server):
    """A server-side TCP connection that sends a write at once when nothing
    is queued before it."""

    def write(self, data: bytes) -> None:
        if (
            type(data) is bytes
            and data
            and self.connected
            and not self._writeDisconnected
            and not self._tempDataLen
            and self.offset == len(self.dataBuffer)
        ):
            sent = self.writeSomeData(data)
            if isinstance(sent, int):
                if sent == len(data):
                    return
                data = data[sent:]
            # Otherwise the connection is lost: queue the data, and the
            # reactor's next write attempt reports the loss as usual.
        super().write(data)


class EagerPort(tcp.Port):
    """A TCP listening port whose connections are L{EagerServer}s."""

    transport = EagerServer


@implementer(IStreamServerEndpoint)
class EagerTCP4ServerEndpoint:
    """Like L{twisted.internet.endpoints.TCP4ServerEndpoint}, listening with
    an L{EagerPort}.

    @param reactor: a POSIX reactor (L{twisted.internet.posixbase}); the
        host runs on Linux with the epoll reactor.
    @param port: the TCP port number (0: any free port).
    @param backlog: the listen queue length (Twisted's default, 50).
    @param interface: the address to bind (C{""}: all IPv4 addresses).
    """

    def __init__(
        self, reactor: Any, port: int, backlog: int = 50, interface: str = ""
    ) -> None:
        self.reactor = reactor
        self.port = port
        self.backlog = backlog
        self.interface = interface

    def listen(self, factory: Any) -> defer.Deferred:
        """Listen with C{factory}; fires with the L{EagerPort}, or fails
        with L{twisted.internet.error.CannotListenError}."""
        return defer.execute(self._listen, factory)

    def _listen(self, factory: Any) -> EagerPort:
        port = EagerPort(self.port, factory, self.backlog, self.interface, self.reactor)
        port.startListening()
        return port
