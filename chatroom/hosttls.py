# -*- test-case-name: tests.test_hosttls -*-
"""The host's TLS layer: Twisted's memory-BIO TLS, writing at once.

L{HostTLSFactory} is what the host wraps around every TLS listener
(L{chatroom.service.HostTLSServerEndpoint}).  It differs from Twisted's
default L{TLSMemoryBIOFactory} in two ways, both through public API (the
factory's C{protocol} attribute and documented producer semantics):

1. Writes are encrypted and handed to TCP at once.  Twisted's default
   transport (C{BufferingTLSTransport}) holds every write smaller than
   64 kB for one more reactor turn, with a C{callLater(0)} per connection;
   the host already writes once per member per turn, so that second
   aggregation only added a turn of delay and a timer per member
   (docs/benchmarks.rst, "The TLS write path").

2. Closing works while a streaming producer is registered.  Every
   L{chatroom.ircserver.IRCConnection} registers itself as the streaming
   producer of its transport (flow control: a full socket holds its output
   and stops reading it).  L{TLSMemoryBIOProtocol.loseConnection} starts
   the TLS shutdown (C{close_notify}) only once no producer is registered,
   and plain TCP likewise closes only once its producer is no longer
   paused (C{twisted/internet/abstract.py}, C{FileDescriptor.loseConnection}:
   "make sure you unregister your producer when it's finished, or the
   connection will never close").  The host's connections never
   unregister, so a close over TLS sent C{ERROR} but no C{close_notify}
   and waited for the peer to hang up or for the close deadline to abort
   it.  L{HostTLSProtocol} ends the producer's registration when the
   connection is closed: at once if it is not paused, otherwise right
   after it resumed and wrote what it held, so no output the connection
   accepted before closing is dropped.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from zope.interface import implementer


@implementer(IPushProducer)
class _ProducerUntilClosed:
    """Stands for a streaming producer registered with a L{HostTLSProtocol};
    passes every event on and remembers whether it is paused, so that the
    TLS layer can end the registration once the connection is closing.

    @param tls: the L{HostTLSProtocol} it is registered with.
    @param producer: the application's L{IPushProducer}.
    """

    def __init__(self, tls: HostTLSProtocol, producer: Any) -> None:
        self.tls = tls
        self.producer = producer
        self.paused = False

    def pauseProducing(self) -> None:
        self.paused = True
        self.producer.pauseProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        self.producer.resumeProducing()
        # What it held is written now; if the connection is closing, its
        # producing is over.
        self.tls._producer_may_finish(self)

    def stopProducing(self) -> None:
        self.producer.stopProducing()


class HostTLSProtocol(TLSMemoryBIOProtocol):
    """Twisted's unbuffered TLS protocol, whose C{loseConnection} also ends a
    streaming producer's registration (see the module docstring)."""

    _until_closed: _ProducerUntilClosed | None = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if not streaming:
            super().registerProducer(producer, streaming)
            return
        until_closed = _ProducerUntilClosed(self, producer)
        # Raises if a producer is registered already: keep the old one then.
        super().registerProducer(until_closed, True)
        self._until_closed = until_closed

    def unregisterProducer(self) -> None:
        self._until_closed = None
        super().unregisterProducer()

    def loseConnection(self) -> None:
        """Write what is pending, then shut TLS down (C{close_notify}) and
        close, as L{TLSMemoryBIOProtocol.loseConnection} does, also when a
        streaming producer is registered."""
        if self.disconnecting or not self.connected:
            return
        super().loseConnection()
        until_closed = self._until_closed
        if until_closed is not None:
            self._producer_may_finish(until_closed)

    def _producer_may_finish(self, until_closed: _ProducerUntilClosed) -> None:
        """Unregister C{until_closed} if the connection is closing and it is
        not paused; unregistering starts the TLS shutdown once nothing is
        left to write (L{TLSMemoryBIOProtocol.unregisterProducer})."""
        if (
            until_closed is self._until_closed
            and self.disconnecting
            and self.connected
            and not until_closed.paused
        ):
            self.unregisterProducer()


class HostTLSFactory(TLSMemoryBIOFactory):
    """A L{TLSMemoryBIOFactory} whose connections are L{HostTLSProtocol}s."""

    protocol = HostTLSProtocol
