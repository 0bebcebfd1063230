# -*- test-case-name: tests.test_ircserver.LimitTests -*-
"""The limits between a peer's bytes and its lines, in both directions.

A L{LineGuard} sits between a transport and a line handler.  Inbound it
frames bytes into bounded lines (RecvQ), counts what a peer sends before it
registers, and applies flood control: a burst of commands, then a steady
rate, with the excess delayed (fake lag) rather than dropped, and reading
from the peer paused meanwhile.  Outbound it holds what a slow reader cannot
take yet and cuts the peer off past a hard bound (SendQ), so one slow member
never holds up the others.  Every limit comes from L{chatroom.host.Limits}
(LIMITS.md); a peer that passes one is reported to the owner with a counter
name and a reason, never with an exception.
"""

from __future__ import annotations

from typing import Any, Callable

from chatroom.core.ircline import LineBuffer, RecvQExceeded
from chatroom.core.tokenbucket import TokenBucket


class LineGuard:
    """Framing, flood delay and output bounds for one peer.

    @param transport: the peer's transport (C{write}, C{pauseProducing},
        C{resumeProducing}).
    @param clock: an C{IReactorTime}.
    @param limits: a L{chatroom.host.Limits}.
    @param on_line: called with each line (bytes, no terminator) the peer
        may run now.
    @param on_violation: called as C{on_violation(counter, reason,
        throttle)} when the peer passes a limit; the owner then drops the
        peer.  C{throttle} says the address should be throttled too.
    @param count: called with a counter name for events worth counting
        that are not violations (C{flood-delayed}).
    """

    # One per connection: slots keep an idle member small.
    __slots__ = (
        "transport",
        "clock",
        "limits",
        "_on_line",
        "_on_violation",
        "_count",
        "_lines",
        "_bucket",
        "_delayed",
        "_delayed_bytes",
        "_drain_call",
        "_before_registration",
        "_held",
        "_held_bytes",
        "_stopped",
    )

    def __init__(
        self,
        transport: Any,
        clock: Any,
        limits: Any,
        on_line: Callable[[bytes], None],
        on_violation: Callable[[str, str, bool], None],
        count: Callable[[str], None],
    ) -> None:
        self.transport = transport
        self.clock = clock
        self.limits = limits
        self._on_line = on_line
        self._on_violation = on_violation
        self._count = count
        self._lines = LineBuffer()
        self._bucket = TokenBucket(limits.flood_burst, limits.flood_rate)
        #: Lines flood control holds back; made on the first one (most
        #: peers never send faster than the flood rate).
        self._delayed: list[bytes] | None = None
        self._delayed_bytes = 0
        self._drain_call: Any = None
        #: Bytes and lines received before registration; C{None} after.
        self._before_registration: list[int] | None = [0, 0]
        self._held: list[bytes] | None = None
        self._held_bytes = 0
        self._stopped = False

    # Inbound

    def registered(self) -> None:
        """The peer registered: the pre-registration budget no longer applies."""
        self._before_registration = None

    def data_received(self, data: bytes) -> None:
        """Frame C{data}; run or delay each complete line."""
        if self._stopped:
            return
        try:
            lines = self._lines.feed(data)
        except RecvQExceeded:
            self._violation("recvq-exceeded", "RecvQ exceeded", False)
            return
        counts = self._before_registration
        if counts is not None:
            counts[0] += len(data)
            counts[1] += len(lines)
            if (
                counts[0] > self.limits.pre_registration_bytes
                or counts[1] > self.limits.pre_registration_lines
            ):
                self._violation(
                    "pre-registration-flood", "Too much input before registration", True
                )
                return
        for line in lines:
            if self._stopped:
                return
            if self._delayed or not self._may_run(line):
                self._delay(line)
            else:
                self._on_line(line)

    def _may_run(self, line: bytes) -> bool:
        if self.limits.flood_rate <= 0:
            return True
        if self._before_registration is not None:
            # Registration has its own budget (pre_registration_lines and
            # _bytes); the burst is kept for what the client does once in.
            return True
        if line[:4].upper() == b"PONG":
            # Answering our PING must never be delayed into a ping timeout.
            return True
        return self._bucket.take(self.clock.seconds())

    def _delay(self, line: bytes) -> None:
        """Flood control: keep the line for later, stop reading meanwhile."""
        if self._delayed is None:
            self._delayed = []
        self._delayed.append(line)
        self._delayed_bytes += len(line)
        if self._delayed_bytes > self.limits.flood_max_delayed:
            self._violation("excess-flood", "Excess Flood", False)
            return
        if self._drain_call is None:
            self._count("flood-delayed")
            self.transport.pauseProducing()
            self._schedule_drain()

    def _schedule_drain(self) -> None:
        wait = self._bucket.wait(self.clock.seconds())
        self._drain_call = self.clock.callLater(wait, self._drain)

    def _drain(self) -> None:
        self._drain_call = None
        while self._delayed and not self._stopped:
            if not self._bucket.take(self.clock.seconds()):
                self._schedule_drain()
                return
            line = self._delayed.pop(0)
            self._delayed_bytes -= len(line)
            self._on_line(line)
        if not self._stopped and self._held is None:
            self.transport.resumeProducing()

    def _violation(self, counter: str, reason: str, throttle: bool) -> None:
        self.stop()
        self._on_violation(counter, reason, throttle)

    # Outbound

    def write(self, data: bytes) -> None:
        """Send C{data}, or hold it while the transport is full."""
        if self._held is None:
            self.transport.write(data)
            return
        self._held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes > self.limits.sendq_hard:
            self._held = None
            self._violation("sendq-exceeded", "SendQ exceeded", False)

    def pause_producing(self) -> None:
        """The transport is full: hold output and stop reading the peer."""
        if self._held is None:
            self._held = []
            self._held_bytes = 0
        self.transport.pauseProducing()

    def resume_producing(self) -> None:
        """The transport drained: send what was held, read again unless
        flood control is holding lines back."""
        held, self._held = self._held, None
        if held:
            self.transport.write(b"".join(held))
        if not self._delayed:
            self.transport.resumeProducing()

    def delayed(self) -> tuple[bytes, ...]:
        """The lines flood control holds back, oldest first."""
        return tuple(self._delayed or ())

    def stop(self) -> None:
        """Run nothing more and cancel the drain timer (the peer is going)."""
        self._stopped = True
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        self._drain_call = None
