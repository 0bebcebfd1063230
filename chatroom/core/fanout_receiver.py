# -*- test-case-name: tests.test_fanout_receiver -*-
"""The member side of fan-out: datagram checks, replay window, reorder
buffer, repair timing and the choice between multicast and TLS delivery.

Everything here is pure: time is passed in as C{now} (seconds, any
monotonic clock) and randomness as a C{random()} callable.  The Twisted
edge calls one method per input and performs the actions it gets back:

==============================  ==============================================
input                           call
==============================  ==============================================
a UDP datagram for the room     L{FanoutReceiver.datagram_received}
C{FANOUT #r KEY ...} line      L{FanoutReceiver.key_received}
C{FANOUT #r MODE ...} line     L{FanoutReceiver.mode_changed}
C{FANOUT #r REPAIRED ...}      L{FanoutReceiver.repaired}
a numbered room event over TLS  L{FanoutReceiver.tls_event} (live,
                                echo, repair or oversized: all the same)
a CHATHISTORY batch ended       L{FanoutReceiver.history_batch}
the timer at C{wake_at} fired  L{FanoutReceiver.tick}
==============================  ==============================================

Each returns a list of actions (L{Deliver}, L{SendRequest},
L{RequestHistory}, L{ModeReport}); after each call the edge
re-arms its one timer for L{FanoutReceiver.wake_at}.  Nothing here
raises on bad input: drops are counted in L{FanoutReceiver.drops} by
reason token.  The protocol is C{docs/protocol-fanout.rst}; the state
machine is C{docs/state-machines/fanout-receiver.dot}.
"""

from __future__ import annotations

import collections
from typing import Callable, Iterable, Sequence, Union

import attrs

from chatroom.core.errors import ParseError
from chatroom.core.fanout import (
    KIND_HEARTBEAT,
    MAX_REPAIR_EVENTS,
    Datagram,
    EpochKey,
    KeyGrant,
    MemberRequest,
    ModeChange,
    Opened,
    Ranges,
    MAX_RANGES_TEXT,
    RoomIdentity,
    decode_payload,
    format_ranges,
)
from chatroom.core.tokenbucket import TokenBucket

REPLAY_WINDOW = 64
"""LIMITS.md: the replay window is 64 datagrams (as IPsec ESP, RFC 4303)."""

MAX_FORWARD_JUMP = 1000
"""LIMITS.md: a counter more than 1000 ahead of the window is not accepted;
the member resynchronises over TLS (C{FANOUT #r SYNC})."""

MAX_AHEAD = 1000
"""Events held beyond the next one to deliver; a gap bigger than this (or
than the 1000-event repair limit) is caught up with CHATHISTORY."""

ROOM_RATE = 200.0
"""LIMITS.md: accepted datagrams per room per second.  Checked just before
the signature (the one expensive check), so a flood costs at most 200
verifications per second; the excess is dropped as C{rate-limited}."""

REPAIR_WAIT = (0.05, 0.2)
"""LIMITS.md: a member waits a random 50-200 ms before asking for repair,
so that reordering settles and a re-multicast can answer many at once
(NORM, RFC 5740 section 5.5.2: NACK back-off)."""

REPAIR_RETRY = 2.0
"""Seconds after a repair request before the same events are asked again."""

TLS_WAIT = 2.0
"""Seconds an event marked "over TLS" in a datagram may take to arrive over
TLS before it is asked for as a repair."""

HISTORY_LIMIT = 100
"""Events asked per CHATHISTORY request (the host's C{CHATHISTORY=100})."""

HISTORY_RETRY = 10.0

KEY_GRACE = 2.0
"""Seconds an old epoch key stays usable after a newer one arrives, for
datagrams still in flight; then it is erased."""

MAX_KEYS = 4
"""At most this many epoch keys are held (the current one and old ones in
their grace period)."""

HOLD_EPOCHS = 8
HOLD_DATAGRAMS = 64
HOLD_TIME = 2.0
"""Datagrams of an epoch up to 8 newer than the current one are held (at
most 64, for 2 s) until its key arrives over TLS: datagrams can overtake
the KEY line."""

SILENCE = 5.0
"""Seconds without a valid datagram or heartbeat after which a multicast
member falls back to TLS (the host sends a heartbeat at least every 2 s)."""

PROBE_TIMEOUT = 5.0
"""Seconds after the key arrives without a valid datagram before the user
is told that multicast does not reach this machine."""

RETRY_BACKOFF = (30.0, 600.0)
"""After a fallback, multicast is tried again after 30 s, doubling to
10 min; reset after 10 min of working multicast."""

SYNC_INTERVAL = 5.0
"""At most one C{FANOUT #r SYNC} per this many seconds."""


# -- actions -------------------------------------------------------------------


@attrs.frozen
class Deliver:
    """Show event C{seq}: C{line} is its IRC line without CR LF, as a TLS
    member with message-tags and server-time gets it."""

    seq: int
    line: bytes


@attrs.frozen
class SendRequest:
    """Write C{FANOUT} + C{request.to_params()} to the host over TLS."""

    request: MemberRequest


@attrs.frozen
class RequestHistory:
    """Send C{CHATHISTORY AFTER #room msgid=ROOM:after limit}; call
    L{FanoutReceiver.history_batch} when the batch has ended."""

    after: int
    limit: int


@attrs.frozen
class ModeReport:
    """Tell the user how events now arrive: C{mode} is C{"multicast"} or
    C{"tls"}; C{reason} is a sentence."""

    mode: str
    reason: str


Action = Union[Deliver, SendRequest, RequestHistory, ModeReport]


# -- replay window -----------------------------------------------------------


class ReplayWindow:
    """Anti-replay over one epoch's datagram counters (RFC 4303 3.4.3).

    C{top} is the highest counter accepted (C{next_counter - 1} at the
    start); bit C{i} of the mask says counter C{top - i} was accepted.
    L{check} never changes anything; only L{accept} (called
    after every other check has passed) moves the window.
    """

    def __init__(
        self,
        next_counter: int = 0,
        size: int = REPLAY_WINDOW,
        max_jump: int = MAX_FORWARD_JUMP,
    ) -> None:
        self.top = next_counter - 1
        self.size = size
        self.max_jump = max_jump
        self._mask = 0

    @property
    def state(self) -> tuple[int, int]:
        """C{(top, mask)}, to compare before and after."""
        return self.top, self._mask

    def check(self, counter: int) -> str | None:
        """C{None} if C{counter} may be accepted, else the reason token:
        C{replay}, C{too-old} or C{too-far-ahead}."""
        if counter > self.top:
            if counter - self.top > self.max_jump:
                return "too-far-ahead"
            return None
        if self.top - counter >= self.size:
            return "too-old"
        if self._mask >> (self.top - counter) & 1:
            return "replay"
        return None

    def accept(self, counter: int) -> None:
        """Mark C{counter} as seen, sliding the window if it is newer."""
        if counter > self.top:
            shift = counter - self.top
            self._mask = (
                ((self._mask << shift) | 1) & ((1 << self.size) - 1)
                if shift < self.size
                else 1
            )
            self.top = counter
        else:
            self._mask |= 1 << (self.top - counter)

    def restart_at(self, next_counter: int) -> None:
        """Resynchronise forward (never backward: that would re-open
        replays) to a counter the host said comes next."""
        if next_counter - 1 > self.top:
            self.top = next_counter - 1
            self._mask = 0


# -- reorder buffer ------------------------------------------------------------


class ReorderBuffer:
    """Merge datagrams, TLS events, repairs and CHATHISTORY catch-up into one
    stream that delivers every sequence number once, in order.

    C{next_seq} is the first event to deliver.  Events are offered from
    any source in any order; duplicates and events already delivered are
    dropped.  Sequence numbers that never existed (a failed commit skips
    them) are passed over once a source says its range is complete.

    While C{tls_from} is set, every event from that number on arrives live
    over TLS, in order, with nothing missing: such an event (offered with
    C{tls=True}) also completes everything from C{tls_from} up to
    itself, and nothing at or after C{tls_from} is ever asked for as a
    repair.
    """

    def __init__(
        self,
        next_seq: int,
        random: Callable[[], float],
        tls_from: int | None = None,
        repair_wait: tuple[float, float] = REPAIR_WAIT,
        max_repair: int = MAX_REPAIR_EVENTS,
        max_ahead: int = MAX_AHEAD,
    ) -> None:
        self.next_seq = next_seq
        self.latest = next_seq - 1
        self.tls_from = tls_from
        self._random = random
        self._repair_wait = repair_wait
        self._max_repair = max_repair
        self._max_ahead = max_ahead
        # seq -> line, or None for a sequence number known not to exist.
        self._held: dict[int, bytes | None] = {}
        # seq -> when to ask for it (first request or retry).
        self._due: dict[int, float] = {}
        # seq -> until when it is expected over TLS (marked in a datagram).
        self._over_tls: dict[int, float] = {}
        self._scanned = next_seq - 1
        self._history_pending: float | None = None
        self._history_latest = 0
        self.counts: collections.Counter[str] = collections.Counter()

    # -- offering events

    def offer(
        self, seq: int, line: bytes, now: float, tls: bool = False
    ) -> list[Deliver]:
        """Offer event C{seq} from any source (C{tls}: it came over the
        member's TLS connection); return what can now be delivered, in
        order."""
        live = tls and self.tls_from is not None and seq >= self.tls_from
        if seq < self.next_seq or (seq in self._held and self._held[seq] is not None):
            self.counts["duplicate"] += 1
            return []
        if seq >= self.next_seq + self._max_ahead and not live:
            self.counts["too-far-ahead"] += 1
            self._known(seq, now)
            return []
        self._held[seq] = line
        self._due.pop(seq, None)
        self._over_tls.pop(seq, None)
        if live:
            # TLS is ordered and complete from tls_from on: whatever is
            # still missing below this event at or after tls_from never
            # existed.
            for missing in range(max(self.next_seq, self.tls_from or 0), seq):
                self._held.setdefault(missing, None)
        delivered = self._drain()
        self._known(seq, now)
        return delivered

    def expect_over_tls(self, seq: int, now: float) -> None:
        """A datagram said event C{seq} is sent over TLS (too big for a
        datagram): do not ask for it unless it is late."""
        if seq >= self.next_seq and seq not in self._held:
            self._over_tls[seq] = now + TLS_WAIT
            self._due.pop(seq, None)
        self._known(seq, now)

    def known(self, latest: int, now: float) -> None:
        """Events up to C{latest} exist (a heartbeat, a MODE line)."""
        self._known(latest, now)

    def complete(self, ranges: Iterable[tuple[int, int]], now: float) -> list[Deliver]:
        """Everything in C{ranges} that exists has been offered: mark the
        rest as never existing and deliver what that unblocks."""
        out: list[Deliver] = []
        for first, last in sorted(ranges):
            self._known(last, now)
            if last < self.next_seq:
                continue
            if first <= self.next_seq:
                for seq in range(self.next_seq, last + 1):
                    line = self._held.pop(seq, None)
                    self._due.pop(seq, None)
                    self._over_tls.pop(seq, None)
                    if line is not None:
                        out.append(Deliver(seq, line))
                    else:
                        self.counts["skipped"] += 1
                self.next_seq = last + 1
                out += self._drain()
                continue
            for seq in range(first, min(last + 1, self.next_seq + self._max_ahead)):
                if seq not in self._held:
                    self._held[seq] = None
                    self.counts["skipped"] += 1
                self._due.pop(seq, None)
                self._over_tls.pop(seq, None)
        self._scan(now)
        return out

    def history_batch(
        self, after: int, events: Sequence[tuple[int, bytes]], limit: int, now: float
    ) -> list[Deliver]:
        """A C{CHATHISTORY AFTER msgid=after limit} batch ended with
        C{events} (oldest first).  A full batch covers C{after} to its
        last event; a short one everything the host had committed, which
        includes every event this buffer had heard of when it asked."""
        delivered: list[Deliver] = []
        self._history_pending = None
        done = after
        for seq, line in events:
            if seq > done + 1:
                delivered += self.complete([(done + 1, seq - 1)], now)
            delivered += self.offer(seq, line, now)
            done = max(done, seq)
        if events and len(events) >= limit:
            last = done
        else:
            last = max(done, self._history_latest)
        if last > done:
            delivered += self.complete([(done + 1, last)], now)
        self.rescan(now)
        return delivered

    # -- timing

    def wake_at(self) -> float | None:
        """When L{due} has something to do (C{None}: nothing)."""
        times = list(self._over_tls.values())
        if self._history_pending is not None:
            # No repairs while a CHATHISTORY request is out.
            times.append(self._history_pending)
        elif self._needs_history():
            times.append(0.0)
        else:
            times += self._due.values()
        return min(times) if times else None

    def due(self, now: float) -> list[RequestHistory | Ranges]:
        """What to ask for now: a L{RequestHistory}, or the ranges of
        one repair request (at most 1000 events)."""
        for seq, deadline in list(self._over_tls.items()):
            if deadline <= now:
                del self._over_tls[seq]
                self._due[seq] = now
        if self._history_pending is not None and self._history_pending <= now:
            self._history_pending = None
        if self._needs_history():
            if self._history_pending is not None:
                return []
            self._history_pending = now + HISTORY_RETRY
            self._history_latest = self.latest
            return [RequestHistory(self.next_seq - 1, HISTORY_LIMIT)]
        ready = sorted(seq for seq, deadline in self._due.items() if deadline <= now)[
            : self._max_repair
        ]
        ranges = _to_ranges(ready)
        # The host takes at most 450 characters of ranges (one IRC line);
        # what does not fit stays due and goes in the next request.
        while len(format_ranges(ranges)) > MAX_RANGES_TEXT:
            ranges = ranges[: len(ranges) * 3 // 4]
        if not ranges:
            return []
        for first, last in ranges:
            for seq in range(first, last + 1):
                self._due[seq] = now + REPAIR_RETRY
        return [ranges]

    # -- inside

    def _needs_history(self) -> bool:
        top = self.latest
        if self.tls_from is not None:
            top = min(top, self.tls_from - 1)
        return top - self.next_seq + 1 > self._max_repair

    def _known(self, latest: int, now: float) -> None:
        if latest > self.latest:
            self.latest = latest
        self._scan(now)

    def _scan(self, now: float) -> None:
        """Give every newly known missing event a repair deadline."""
        stop = min(self.latest, self.next_seq + self._max_ahead - 1)
        if self.tls_from is not None:
            stop = min(stop, self.tls_from - 1)
        start = max(self._scanned + 1, self.next_seq)
        # One random wait for everything found missing at once, so that a
        # lost burst is asked for in one request, not one per event.
        deadline: float | None = None
        for seq in range(start, stop + 1):
            if (
                seq not in self._held
                and seq not in self._over_tls
                and seq not in self._due
            ):
                if deadline is None:
                    low, high = self._repair_wait
                    deadline = now + low + (high - low) * self._random()
                self._due[seq] = deadline
        self._scanned = max(self._scanned, stop)

    def rescan(self, now: float) -> None:
        """Look again at every held-back number (after C{tls_from}
        changed)."""
        if self.tls_from is not None:
            for seq in [s for s in self._due if s >= self.tls_from]:
                del self._due[seq]
        self._scanned = self.next_seq - 1
        self._scan(now)

    def _drain(self) -> list[Deliver]:
        out = []
        while self.next_seq in self._held:
            line = self._held.pop(self.next_seq)
            self._due.pop(self.next_seq, None)
            if line is not None:
                out.append(Deliver(self.next_seq, line))
            self.next_seq += 1
        return out


def _to_ranges(seqs: Sequence[int]) -> Ranges:
    ranges: list[tuple[int, int]] = []
    for seq in seqs:
        if ranges and ranges[-1][1] == seq - 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return tuple(ranges)


# -- the receiver --------------------------------------------------------------


@attrs.define
class _Epoch:
    key: EpochKey
    window: ReplayWindow
    expires: float | None = None


class FanoutReceiver:
    """One member's fan-out state for one room.

    Created when the first C{KEY} line for the room arrives; C{next_seq}
    is one more than the last event the member has seen over TLS.  The
    member starts on TLS delivery and asks for multicast delivery
    (C{FANOUT #r START}) as soon as one valid datagram has arrived.

    @ivar drops: datagrams dropped, by reason token.
    @ivar mode: C{"tls"}, C{"starting"}, C{"multicast"} or C{"stopping"}.
    """

    def __init__(
        self,
        identity: RoomIdentity,
        grant: KeyGrant,
        next_seq: int,
        now: float,
        random: Callable[[], float],
    ) -> None:
        self.identity = identity
        self.room = grant.room
        self.group = grant.group
        self.port = grant.port
        self.buffer = ReorderBuffer(next_seq, random, tls_from=next_seq)
        self.mode = "tls"
        self.drops: collections.Counter[str] = collections.Counter()
        self.accepted = 0
        self._random = random
        self._keys: dict[int, _Epoch] = {}
        self._current = 0
        self._held: list[tuple[float, Datagram]] = []
        self._budget = TokenBucket(ROOM_RATE, ROOM_RATE)
        self._last_valid: float | None = None
        self._probe_deadline: float | None = now + PROBE_TIMEOUT
        self._retry_at = now
        self._backoff = RETRY_BACKOFF[0]
        self._multicast_since: float | None = None
        self._last_sync: float | None = None
        self._install(grant, now)

    # -- inputs

    def datagram_received(self, data: bytes, now: float) -> list[Action]:
        """Check a datagram in the documented order and use it if it passes.

        Order: cheap header checks, room, epoch, replay window, decrypt,
        rate budget, signature; only then does the window move and the
        events enter the buffer.  Never raises; every drop is counted.
        """
        try:
            datagram = Datagram.from_bytes(data)
        except ParseError as e:
            self.drops[e.reason] += 1
            return []
        if datagram.room_id != self.identity.room_id:
            self.drops["unknown-room"] += 1
            return []
        return self.check_datagram(datagram, now)

    def key_received(self, grant: KeyGrant, now: float) -> list[Action]:
        """A C{KEY} line arrived over TLS (a rotation or a SYNC answer)."""
        if grant.room != self.room:
            return []
        self._install(grant, now)
        held, self._held = self._held, []
        actions: list[Action] = []
        for _, datagram in held:
            actions += self.check_datagram(datagram, now)
        return actions

    def mode_changed(self, change: ModeChange, now: float) -> list[Action]:
        """The host confirmed a START (MULTICAST) or a STOP (TLS)."""
        actions: list[Action] = []
        if change.multicast:
            # Everything from tls_from up to change.seq came live over TLS
            # before this line; gaps below tls_from are still being
            # repaired and must not be passed over.
            tls_from = self.buffer.tls_from
            if tls_from is not None and change.seq >= tls_from:
                actions += self.buffer.complete([(tls_from, change.seq)], now)
            self.buffer.tls_from = None
            self.buffer.rescan(now)
            self.mode = "multicast"
            self._multicast_since = now
            self._last_valid = now
            actions.append(ModeReport("multicast", "Receiving the room by multicast."))
        else:
            self.buffer.tls_from = change.seq + 1
            self.buffer.known(change.seq, now)
            self.buffer.rescan(now)
            self.mode = "tls"
            self._multicast_since = None
        return actions

    def tls_event(self, seq: int, line: bytes, now: float) -> list[Action]:
        """A numbered room event arrived over TLS (live, echo, repair, or
        one too big for a datagram)."""
        return list(self.buffer.offer(seq, line, now, tls=True))

    def repaired(self, ranges: Ranges, now: float) -> list[Action]:
        """The host's C{REPAIRED} line: the ranges are complete."""
        return list(self.buffer.complete(ranges, now))

    def history_batch(
        self, after: int, events: Sequence[tuple[int, bytes]], limit: int, now: float
    ) -> list[Action]:
        """A CHATHISTORY batch asked by L{RequestHistory} ended."""
        return list(self.buffer.history_batch(after, events, limit, now))

    def tick(self, now: float) -> list[Action]:
        """The timer fired: repairs, history, silence, key erasure."""
        actions: list[Action] = []
        for epoch, state in list(self._keys.items()):
            if state.expires is not None and state.expires <= now:
                del self._keys[epoch]
        kept = [(t, d) for t, d in self._held if t + HOLD_TIME > now]
        self.drops["key-late"] += len(self._held) - len(kept)
        self._held = kept
        if (
            self.mode == "multicast"
            and self._last_valid is not None
            and now - self._last_valid >= SILENCE
        ):
            actions += self._fall_back(
                now,
                "No datagram for %d seconds; receiving the room over TLS." % SILENCE,
            )
        if self._probe_deadline is not None and now >= self._probe_deadline:
            self._probe_deadline = None
            if self.mode == "tls":
                actions.append(
                    ModeReport(
                        "tls",
                        "No multicast datagram arrived; receiving the room over TLS.",
                    )
                )
        if (
            self.mode == "multicast"
            and self._multicast_since is not None
            and now - self._multicast_since >= RETRY_BACKOFF[1]
        ):
            self._backoff = RETRY_BACKOFF[0]
        for item in self.buffer.due(now):
            if isinstance(item, RequestHistory):
                actions.append(item)
            else:
                actions.append(
                    SendRequest(MemberRequest(self.room, "REPAIR", ranges=item))
                )
        return actions

    @property
    def wake_at(self) -> float | None:
        """When L{tick} must next be called (C{None}: no timer)."""
        times = []
        buffered = self.buffer.wake_at()
        if buffered is not None:
            times.append(buffered)
        if self.mode == "multicast" and self._last_valid is not None:
            times.append(self._last_valid + SILENCE)
        if self._probe_deadline is not None:
            times.append(self._probe_deadline)
        times += [s.expires for s in self._keys.values() if s.expires is not None]
        times += [t + HOLD_TIME for t, _ in self._held]
        return min(times) if times else None

    def replay_window(self, epoch: int) -> ReplayWindow | None:
        """The replay window of C{epoch} (C{None}: no key held for it)."""
        state = self._keys.get(epoch)
        return state.window if state is not None else None

    @property
    def epochs(self) -> tuple[int, ...]:
        """The epochs whose keys are held, oldest first."""
        return tuple(sorted(self._keys))

    # -- inside

    def _install(self, grant: KeyGrant, now: float) -> None:
        epoch = grant.epoch_key.epoch
        existing = self._keys.get(epoch)
        if existing is not None:
            if existing.key == grant.epoch_key:
                existing.window.restart_at(grant.next_counter)
            else:
                self.drops["conflicting-key"] += 1
            return
        if epoch < self._current:
            self.drops["stale-key"] += 1
            return
        for state in self._keys.values():
            if state.expires is None:
                state.expires = now + KEY_GRACE
        self._keys[epoch] = _Epoch(grant.epoch_key, ReplayWindow(grant.next_counter))
        self._current = epoch
        while len(self._keys) > MAX_KEYS:
            del self._keys[min(self._keys)]
        self.group, self.port = grant.group, grant.port

    def check_datagram(self, datagram: Datagram, now: float) -> list[Action]:
        """L{datagram_received} after the header checks and the room
        id (used by L{FanoutListener})."""
        state = self._keys.get(datagram.epoch)
        if state is None or (state.expires is not None and state.expires <= now):
            if self._current < datagram.epoch <= self._current + HOLD_EPOCHS:
                if len(self._held) < HOLD_DATAGRAMS:
                    self._held.append((now, datagram))
                else:
                    self.drops["hold-full"] += 1
                return []
            self.drops[
                "old-epoch" if datagram.epoch <= self._current else "unknown-epoch"
            ] += 1
            return []
        reason = state.window.check(datagram.counter)
        if reason is not None:
            self.drops[reason] += 1
            if reason == "too-far-ahead":
                return self._sync(now)
            return []
        try:
            plaintext = datagram.open(self.identity, state.key)
        except ParseError as e:
            self.drops[e.reason] += 1
            return []
        if not self._budget.take(now):
            self.drops["rate-limited"] += 1
            return []
        try:
            datagram.verify(self.identity.q)
            opened = decode_payload(datagram, plaintext)
        except ParseError as e:
            self.drops[e.reason] += 1
            return []
        state.window.accept(datagram.counter)
        self.accepted += 1
        return self._use(opened, now)

    def _use(self, opened: Opened, now: float) -> list[Action]:
        actions: list[Action] = []
        self._last_valid = now
        self._probe_deadline = None
        if opened.kind == KIND_HEARTBEAT:
            self.buffer.known(opened.seq, now)
        else:
            for i, line in enumerate(opened.lines):
                seq = opened.seq + i
                if line is None:
                    self.buffer.expect_over_tls(seq, now)
                else:
                    actions += self.buffer.offer(seq, line, now)
        if self.mode == "tls" and now >= self._retry_at:
            self.mode = "starting"
            actions.append(
                SendRequest(MemberRequest(self.room, "START", epoch=self._current))
            )
        return actions

    def _fall_back(self, now: float, reason: str) -> list[Action]:
        self.mode = "stopping"
        self._multicast_since = None
        self._retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, RETRY_BACKOFF[1])
        return [
            SendRequest(MemberRequest(self.room, "STOP")),
            ModeReport("tls", reason),
        ]

    def _sync(self, now: float) -> list[Action]:
        if self._last_sync is not None and now - self._last_sync < SYNC_INTERVAL:
            return []
        self._last_sync = now
        return [SendRequest(MemberRequest(self.room, "SYNC"))]


class FanoutListener:
    """Dispatch the datagrams of one socket to the rooms a client is in,
    by the compact room id; count what belongs to no room."""

    def __init__(self) -> None:
        self.rooms: dict[bytes, FanoutReceiver] = {}
        self.drops: collections.Counter[str] = collections.Counter()

    def add(self, receiver: FanoutReceiver) -> None:
        """Start dispatching to C{receiver}."""
        self.rooms[receiver.identity.room_id] = receiver

    def remove(self, receiver: FanoutReceiver) -> None:
        """Stop dispatching to C{receiver} (the member left the room)."""
        self.rooms.pop(receiver.identity.room_id, None)

    def datagram_received(
        self, data: bytes, now: float
    ) -> tuple[str | None, list[Action]]:
        """Return the room the datagram went to (C{None}: dropped) and the
        actions of its receiver."""
        try:
            datagram = Datagram.from_bytes(data)
        except ParseError as e:
            self.drops[e.reason] += 1
            return None, []
        receiver = self.rooms.get(datagram.room_id)
        if receiver is None:
            self.drops["unknown-room"] += 1
            return None, []
        return receiver.room, receiver.check_datagram(datagram, now)
