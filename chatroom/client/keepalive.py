# -*- test-case-name: tests.test_client_keepalive -*-
"""Noticing a dead link: probe the host after a quiet spell, give up when it stays silent.

Radio links fail without a FIN or RST, so a quiet TCP connection says
nothing about whether the host is still there.  A L{Keepalive} watches the
time of the last line from the host: after C{interval} seconds of silence
it asks its owner to send a probe (an IRC C{PING}, which the host answers
with C{PONG}); if nothing at all arrives within C{timeout} more seconds, it
declares the link dead.  Any line counts as a sign of life, not only the
C{PONG}.

Defaults (LIMITS.md "Client"): probe after 30 s, dead 30 s later.  irssi's
C{lag_check_time} and WeeChat's C{lag_check} are 60 s and WeeChat's
C{lag_reconnect} 300 s, too slow for a chat on a mesh; the host's own
timeout for a silent client is 150 s.

Pure: the clock is passed in (C{seconds()} and C{callLater()}, as
C{twisted.internet.task.Clock} has them); nothing from C{twisted.internet}
is imported.  Drawn in C{docs/state-machines/keepalive.dot}.
"""

from __future__ import annotations

import enum
from typing import Any, Callable

#: Seconds without a line from the host before a probe is sent.
PROBE_INTERVAL = 30.0

#: Seconds to wait for any line after the probe before the link is dead.
PROBE_TIMEOUT = 30.0


class KeepaliveState(enum.Enum):
    """The states of a L{Keepalive}."""

    STOPPED = "stopped"
    QUIET = "quiet"
    PROBING = "probing"
    DEAD = "dead"


class Keepalive:
    """Probe a quiet connection and declare it dead when the probe goes unanswered.

    @param clock: C{seconds()} and C{callLater(delay, f)}.
    @param probe: called with a token when a probe should be sent.
    @param dead: called once, with a sentence, when the link is dead.
    @param interval: seconds of silence before probing (> 0).
    @param timeout: seconds to wait after the probe (> 0).
    @ivar state: the current L{KeepaliveState}.
    @ivar probes: probes sent so far.
    """

    def __init__(
        self,
        clock: Any,
        probe: Callable[[str], None],
        dead: Callable[[str], None],
        interval: float = PROBE_INTERVAL,
        timeout: float = PROBE_TIMEOUT,
    ) -> None:
        if interval <= 0 or timeout <= 0:
            raise ValueError("keepalive interval and timeout must be positive")
        self.clock = clock
        self.probe = probe
        self.dead = dead
        self.interval = interval
        self.timeout = timeout
        self.state = KeepaliveState.STOPPED
        self.probes = 0
        self._last_line = 0.0
        self._call: Any = None

    def start(self) -> None:
        """Begin watching (the connection is up); counts as a line now."""
        if self.state is not KeepaliveState.STOPPED:
            return
        self.state = KeepaliveState.QUIET
        self._last_line = self.clock.seconds()
        self._arm(self.interval)

    def line_received(self) -> None:
        """A line arrived from the host: the link is alive.

        Cheap on purpose (it runs for every line): the timer is not moved,
        it checks the time of the last line when it fires.
        """
        self._last_line = self.clock.seconds()
        if self.state is KeepaliveState.PROBING:
            self.state = KeepaliveState.QUIET
            self._cancel()
            self._arm(self.interval)

    def stop(self) -> None:
        """Stop watching (the connection closed)."""
        self._cancel()
        if self.state is not KeepaliveState.DEAD:
            self.state = KeepaliveState.STOPPED

    def _arm(self, delay: float) -> None:
        self._call = self.clock.callLater(delay, self._fire)

    def _cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _fire(self) -> None:
        self._call = None
        now = self.clock.seconds()
        if self.state is KeepaliveState.QUIET:
            quiet = now - self._last_line
            if quiet < self.interval:
                self._arm(self.interval - quiet)
                return
            self.state = KeepaliveState.PROBING
            self.probes += 1
            self._arm(self.timeout)
            self.probe("chatroom-%d" % (self.probes,))
        elif self.state is KeepaliveState.PROBING:
            self.state = KeepaliveState.DEAD
            self.dead(
                "no answer from the host for %.0f s, even to a PING"
                % (now - self._last_line,)
            )
