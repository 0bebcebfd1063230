# -*- test-case-name: tests.test_client_reconnect -*-
"""The reconnect-and-follow state machine of a room session, with an injected clock.

A L{ReconnectMachine} decides I{when} to connect and I{where} (which
announcement of the room), and nothing else: the session does the
connecting and reports back with events.  It never reads a global clock
and imports nothing from C{twisted.internet}, so a test drives it with
C{task.Clock} and a recording fake.  The states and transitions are drawn
in C{docs/state-machines/reconnect.dot} and tabled in C{docs/client.rst}.

Backoff follows C{twisted.application.internet.ClientService}: the delay
before retry number I{n} is C{policy(n)}, by default
C{backoffPolicy()} (1 s growing by 1.5 up to 60 s, with jitter); a
successful join resets the count.  A newer announcement of the room
(higher counter C{T}: the host moved or restarted) ends any wait and is
connected to at once.
"""

from __future__ import annotations

import enum
from typing import Any, Callable, Protocol

import attrs


class ReconnectState(enum.Enum):
    """The states of a L{ReconnectMachine}."""

    IDLE = "idle"
    CONNECTING = "connecting"
    JOINED = "joined"
    WAITING = "waiting"
    CLOSED = "closed"
    FAILED = "failed"


@attrs.frozen
class RoomTarget:
    """Where a room is: its key C{q}, name, addresses in the host's order,
    and the announcement counter C{T} (-1 when given by hand with
    C{--connect}, so any real announcement is newer).

    @ivar announcement: the signed announcement this came from, if any (a
        participant relays it while joined).
    """

    q: bytes
    room: str
    addresses: tuple[str, ...]
    counter: int = -1
    announcement: Any = attrs.field(default=None, eq=False, repr=False)

    @classmethod
    def from_announcement(cls, announcement: Any) -> RoomTarget:
        """The target an announcement describes."""
        return cls(
            announcement.q,
            announcement.room,
            tuple(str(a) for a in announcement.addresses),
            announcement.counter,
            announcement,
        )


class ReconnectActions(Protocol):
    """What the machine asks its session to do."""

    def start_attempt(self, attempt: int, target: RoomTarget) -> None:
        """Start connection attempt number C{attempt} to C{target}; report
        with L{ReconnectMachine.attempt_succeeded} or C{attempt_failed}."""

    def disconnect(self) -> None:
        """Drop the current connection or abandon the current attempt."""

    def ask_network(self, target: RoomTarget) -> None:
        """Ask the network whether the room has a newer announcement."""

    def report(self, text: str) -> None:
        """Tell the user one line about what is happening."""


class DelayedCall(Protocol):
    def cancel(self) -> None: ...

    def active(self) -> bool: ...


class Clock(Protocol):
    def seconds(self) -> float: ...

    def callLater(
        self, delay: float, f: Callable[..., Any], *args: Any
    ) -> DelayedCall: ...


def default_policy() -> Callable[[int], float]:
    """ClientService's own backoff: 1 s, x1.5 per failure, at most 60 s,
    plus up to 1 s of jitter."""
    from twisted.application.internet import backoffPolicy

    return backoffPolicy()


class ReconnectMachine:
    """Keeps one room session connected, following the host when it moves.

    @ivar state: the current L{ReconnectState}.
    @ivar target: where the next connection attempt goes.
    @ivar failures: failed attempts since the last successful join.
    @ivar moved: True when the target changed since the last join.
    """

    def __init__(
        self,
        clock: Clock,
        actions: ReconnectActions,
        target: RoomTarget,
        policy: Callable[[int], float] | None = None,
    ) -> None:
        self.clock = clock
        self.actions = actions
        self.target = target
        self.policy = policy if policy is not None else default_policy()
        self.state = ReconnectState.IDLE
        self.failures = 0
        self.moved = False
        self.ever_joined = False
        self.disconnected_at: float | None = None
        self._attempt = 0
        self._timer: DelayedCall | None = None

    # Events

    def start(self) -> None:
        """Connect for the first time."""
        if self.state is ReconnectState.IDLE:
            self._connect()

    def attempt_succeeded(self, attempt: int) -> None:
        """Attempt C{attempt} registered, joined and caught up."""
        if attempt != self._attempt or self.state is not ReconnectState.CONNECTING:
            return
        self.state = ReconnectState.JOINED
        self.failures = 0
        self.ever_joined = True
        self.moved = False

    def attempt_failed(self, attempt: int, why: str) -> None:
        """Attempt C{attempt} failed with the sentence C{why}.

        Before the first join the failure is final (the caller shows the
        error); afterwards the machine waits and tries again.
        """
        if attempt != self._attempt or self.state is not ReconnectState.CONNECTING:
            return
        if not self.ever_joined:
            self.state = ReconnectState.FAILED
            return
        self.failures += 1
        self._wait(why)

    def connection_lost(self, why: str) -> None:
        """The joined connection dropped."""
        if self.state is not ReconnectState.JOINED:
            return
        self.disconnected_at = self.clock.seconds()
        # Whoever the report reaches already sees the session as not joined.
        self.state = ReconnectState.WAITING
        self.actions.report(
            "Lost the connection to %s (%s); reconnecting." % (self.target.room, why)
        )
        self._wait(why)

    def announcement_seen(self, target: RoomTarget) -> None:
        """A valid announcement of this room arrived; follow it if newer."""
        if (target.q, target.room) != (self.target.q, self.target.room):
            return
        if target.counter <= self.target.counter:
            return
        moved = target.addresses != self.target.addresses
        self.target = target
        if moved:
            self.moved = True
        if self.state is ReconnectState.WAITING:
            self._cancel_timer()
            self._connect()
        elif self.state is ReconnectState.CONNECTING and moved:
            # The attempt in flight may hang on an address that is gone.
            self.actions.disconnect()
            self._connect()

    def close(self) -> None:
        """Stop for good: cancel the wait, drop any connection."""
        if self.state in (ReconnectState.CLOSED, ReconnectState.FAILED):
            return
        active = self.state in (ReconnectState.CONNECTING, ReconnectState.JOINED)
        self.state = ReconnectState.CLOSED
        self._cancel_timer()
        if active:
            self.actions.disconnect()

    # Internals

    def _connect(self) -> None:
        self.state = ReconnectState.CONNECTING
        self._attempt += 1
        self.actions.start_attempt(self._attempt, self.target)

    def _wait(self, why: str) -> None:
        self.state = ReconnectState.WAITING
        delay = self.policy(self.failures)
        self.actions.ask_network(self.target)
        self._timer = self.clock.callLater(delay, self._retry)

    def _retry(self) -> None:
        self._timer = None
        if self.state is ReconnectState.WAITING:
            self._connect()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
