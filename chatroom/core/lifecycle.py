# -*- test-case-name: tests.test_lifecycle -*-
"""The life of one client connection, and the one deadline each phase has.

    HANDSHAKING --handshake done--> REGISTERING --NICK+USER--> REGISTERED
         |                              |                         |
         +----------- close ------------+--------- close ---------+--> CLOSING
         |                              |                         |       |
         +---------------------------- lost --------------------------> CLOSED

Each phase has exactly one deadline (LIMITS.md, "TLS listener and IRC
session"): the TLS handshake must finish within C{handshake_timeout}
seconds, registration within C{registration_timeout} after it, a registered
client that is silent for C{ping_after} seconds is sent a PING and closed
at C{close_after}, and a closing connection whose peer never finishes the
close is aborted after C{close_grace}.  L{Lifecycle.due} says what is due
at a given time and when to look again, so the edge keeps a single timer.
The diagram is C{docs/state-machines/connection.dot}.
"""

from __future__ import annotations

import enum

import attrs


class Phase(enum.IntEnum):
    """Where a connection is in its life; the order is the order of life."""

    HANDSHAKING = 1
    REGISTERING = 2
    REGISTERED = 3
    CLOSING = 4
    CLOSED = 5


class Due(enum.Enum):
    """What the edge must do when a deadline passes."""

    #: Drop the connection at once (handshake or close took too long).
    ABORT = "abort"
    #: Say C{ERROR :Registration timeout} and close.
    REGISTRATION_TIMEOUT = "registration-timeout"
    #: Send a C{PING}: the client has been silent for C{ping_after}.
    PING = "ping"
    #: Close with C{Ping timeout}: silent for C{close_after}.
    PING_TIMEOUT = "ping-timeout"


@attrs.frozen
class Deadlines:
    """The deadlines of the phases, in seconds (LIMITS.md defaults)."""

    handshake_timeout: float = 10.0
    registration_timeout: float = 30.0
    ping_after: float = 90.0
    close_after: float = 150.0
    close_grace: float = 10.0


class Lifecycle:
    """The phase of one connection and the deadline that applies to it.

    @param deadlines: the L{Deadlines}.
    @param now: when the connection was accepted, in seconds.
    @param tls: whether a TLS handshake comes first; without TLS the
        connection starts in L{Phase.REGISTERING}.
    """

    # One per connection: slots keep an idle member small.
    __slots__ = (
        "deadlines",
        "phase",
        "registered",
        "open",
        "_since",
        "_last_input",
        "_pinged",
    )

    def __init__(self, deadlines: Deadlines, now: float, tls: bool) -> None:
        self.deadlines = deadlines
        self.phase = Phase.HANDSHAKING if tls else Phase.REGISTERING
        #: Whether the client registered (and the connection is not over).
        self.registered = False
        #: Whether the connection still takes input and output.
        self.open = True
        self._since = now
        self._last_input = now
        self._pinged = False

    def __repr__(self) -> str:
        return "<Lifecycle %s>" % (self.phase.name,)

    def _enter(self, phase: Phase, now: float) -> bool:
        if phase <= self.phase:
            return False
        self.phase = phase
        self._since = now
        # Plain attributes, not properties: every write to a member reads
        # C{open}, so it is a field lookup on the delivery path.
        self.registered = phase == Phase.REGISTERED
        self.open = phase < Phase.CLOSING
        return True

    def handshake_done(self, now: float) -> bool:
        """The TLS handshake finished; C{True} if that changed the phase."""
        return self.phase == Phase.HANDSHAKING and self._enter(Phase.REGISTERING, now)

    def register(self, now: float) -> bool:
        """The client registered; C{True} if that changed the phase."""
        if self.phase != Phase.REGISTERING:
            return False
        self._last_input = now
        return self._enter(Phase.REGISTERED, now)

    def close(self, now: float) -> bool:
        """The host is closing the connection; C{False} if it already was."""
        return self._enter(Phase.CLOSING, now)

    def lost(self, now: float) -> bool:
        """The connection is gone; C{False} if it already was."""
        return self._enter(Phase.CLOSED, now)

    def input(self, now: float) -> None:
        """The client sent something: it is alive."""
        self._last_input = now
        self._pinged = False

    def due(self, now: float) -> tuple[Due | None, float | None]:
        """What is due at C{now}, and in how many seconds to ask again.

        @return: C{(action, wait)}: C{action} is C{None} when nothing is
            due yet; C{wait} is C{None} when no deadline remains.
        """
        d = self.deadlines
        phase = self.phase
        if phase == Phase.REGISTERED:
            silence = now - self._last_input
            if silence >= d.close_after:
                return Due.PING_TIMEOUT, None
            if silence >= d.ping_after:
                action = None if self._pinged else Due.PING
                self._pinged = True
                return action, d.close_after - silence
            return None, d.ping_after - silence
        limit, action = {
            Phase.HANDSHAKING: (d.handshake_timeout, Due.ABORT),
            Phase.REGISTERING: (d.registration_timeout, Due.REGISTRATION_TIMEOUT),
            Phase.CLOSING: (d.close_grace, Due.ABORT),
        }.get(phase, (None, None))
        if limit is None:
            return None, None
        left = self._since + limit - now
        if left <= 0:
            return action, None
        return None, left
