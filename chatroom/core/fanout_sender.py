# -*- test-case-name: tests.test_fanout_sender -*-
"""The host side of fan-out for one room: epoch keys and their rotation,
packing a turn's events into signed datagrams, pacing, heartbeats, and
repair with NACK aggregation.

Pure: time is passed in as C{now} (seconds), randomness as callables, the
host key as an Ed25519 private key.  The Twisted edge calls one method per
input and performs the actions it gets back:

=================================  ===========================================
input                              call
=================================  ===========================================
a member with the capability       L{FanoutSender.member_joined}
joined the room
a member left (PART, QUIT, KICK,   L{FanoutSender.member_left}, before
ping timeout, lost connection)     the turn holding its leave event is flushed
C{FANOUT #r START|STOP|SYNC|       L{FanoutSender.request}
REPAIR} from a member
end of a reactor turn (after the   L{FanoutSender.flush} with the turn's
history commit)                    committed events, oldest first
the timer at C{wake_at} fired      L{FanoutSender.flush} with no events
=================================  ===========================================

Actions: L{SendKey}, L{SendMode}, L{SendDatagram},
L{SendEvents}, L{SendRepair}.  When delivering a turn's events
over TLS the edge skips every member for which L{FanoutSender.is_multicast}
is true at that moment.  The protocol is C{docs/protocol-fanout.rst}; the
key rotation is drawn in C{docs/state-machines/fanout-rotation.dot}.
"""

from __future__ import annotations

import collections
from typing import Callable, Hashable, Iterable, Sequence, Union

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chatroom.core.fanout import (
    KEY_SIZE,
    KIND_DATA,
    KIND_HEARTBEAT,
    MAX_EPOCH,
    MAX_LINE_BYTES,
    MAX_PLAINTEXT,
    EpochKey,
    KeyGrant,
    MemberRequest,
    ModeChange,
    Ranges,
    RoomIdentity,
    encode_events,
    seal,
)
from chatroom.core.tokenbucket import TokenBucket

Member = Hashable
"""Whatever the edge uses to name a member's connection."""

SEND_RATE = 200.0
SEND_BURST = 50.0
"""Datagrams per room: at most 50 at once, then 200 per second, so that no
receiver ever passes its 200-per-second budget (LIMITS.md).  Events that
wait for a token are packed together into fewer datagrams."""

HEARTBEATS = (0.25, 0.5, 1.0, 2.0)
"""Seconds from the last datagram to each heartbeat; the last interval
repeats (PGM heartbeat SPMs, RFC 3208 section 6.1.1)."""

MAX_BACKLOG = 1000
"""Events waiting for a pacing token, at most.  Beyond it the oldest are
not multicast at all: members find the gap and fetch those events over
TLS (a repair, or CHATHISTORY past 1000), so a room busier than its
multicast budget (200 datagrams a second) degrades to TLS instead of
queueing without bound.  1000 is the members' reorder buffer (LIMITS.md,
"forward jump")."""

CACHE_EVENTS = 2000
"""Recent events kept in memory for repairs (twice the 1000-event repair
limit); older ones are read from the history store by the edge."""

REPAIR_WINDOW = 0.15
"""Seconds the host gathers repair requests for an event before answering
(NORM, RFC 5740 section 5.5.3: the sender aggregates NACKs over the
receivers' back-off).  Members wait a random 50-200 ms before asking, so
the requests for one loss seen by many arrive spread over 150 ms: a window
as long gathers nearly all of them into one decision."""

REPAIR_THRESHOLD = 3
"""Members asking for the same event within the window that make the host
send it once more on the group instead of once per member over TLS."""

REPAIR_HOLDOFF = 0.5
"""Seconds after a re-multicast during which new requests for the same
events are ignored (they crossed it); a member that lost it asks again
after its 2 s retry."""


# -- actions -------------------------------------------------------------------


@attrs.frozen
class SendKey:
    """Write C{FANOUT} + C{grant.to_params()} to C{member} over TLS."""

    member: Member
    grant: KeyGrant


@attrs.frozen
class SendMode:
    """Write C{FANOUT} + C{change.to_params()} to C{member} over TLS."""

    member: Member
    change: ModeChange


@attrs.frozen
class SendDatagram:
    """Send C{data} to the fan-out group (C{group}:C{port})."""

    data: bytes


@attrs.frozen
class SendEvents:
    """Write these event lines (add CR LF) to each of C{members} over TLS:
    events too big for a datagram, in order with the rest."""

    members: tuple[Member, ...]
    events: tuple[tuple[int, bytes], ...]


@attrs.frozen
class SendRepair:
    """Answer a repair over TLS: write C{events} (seq, line) to C{member},
    then the events of C{uncached} read from the history store, then
    C{FANOUT #room REPAIRED} + C{ranges}.  Numbers in C{ranges} that are
    in neither were skipped (never committed)."""

    member: Member
    ranges: Ranges
    events: tuple[tuple[int, bytes], ...]
    uncached: Ranges = ()


SenderAction = Union[SendKey, SendMode, SendDatagram, SendEvents, SendRepair]


# -- epoch keys ----------------------------------------------------------------


@attrs.define
class SenderEpoch:
    """One epoch on the host: its key, the first sequence number it seals,
    and the counter of the next datagram sealed under it."""

    key: EpochKey
    start_seq: int
    counter: int = 0

    def take_counter(self) -> int:
        """The counter (and nonce) of a new datagram; never the same twice."""
        counter = self.counter
        self.counter += 1
        return counter


class EpochKeys:
    """The host's epoch keys for one room.

    Epoch 1 starts with the first event the sender sees.  L{rotate}
    starts a new epoch with a fresh random key at a sequence number; every
    event from that number on is sealed under the new key (or a later
    one), so a member who left at that number never receives a key that
    opens them.  An old key is erased as soon as the events of its range
    have been sealed (L{erase_before}).

    C{random_bytes(n)} must be a cryptographic source (C{os.urandom}).
    """

    def __init__(
        self, random_bytes: Callable[[int], bytes], start_seq: int = 1
    ) -> None:
        self._random_bytes = random_bytes
        self.epochs: list[SenderEpoch] = [
            SenderEpoch(EpochKey(1, self._new_key()), start_seq)
        ]
        self.rotations = 0

    def _new_key(self) -> bytes:
        key = self._random_bytes(KEY_SIZE)
        if len(key) != KEY_SIZE:
            raise ValueError("random_bytes returned the wrong length")
        return key

    @property
    def current(self) -> SenderEpoch:
        """The newest epoch: the one members are given and repairs use."""
        return self.epochs[-1]

    def rotate(self, from_seq: int) -> SenderEpoch:
        """Start a new epoch at C{from_seq}; return it.

        @raise ValueError: after 2**32-1 epochs (a host restart, which
            draws new keys, starts again at 1).
        """
        epoch = self.current.key.epoch + 1
        if epoch > MAX_EPOCH:
            raise ValueError("epoch numbers are exhausted")
        from_seq = max(from_seq, self.current.start_seq)
        if (
            self.current.start_seq == from_seq
            and self.current.counter == 0
            and len(self.epochs) > 1
        ):
            # Nothing was ever sealed under the current epoch: replace it.
            self.epochs.pop()
        new = SenderEpoch(EpochKey(epoch, self._new_key()), from_seq)
        self.epochs.append(new)
        self.rotations += 1
        return new

    def for_seq(self, seq: int) -> SenderEpoch:
        """The epoch that seals event C{seq}."""
        for state in reversed(self.epochs):
            if state.start_seq <= seq:
                return state
        return self.epochs[0]

    def erase_before(self, seq: int) -> None:
        """Forget every key not needed for events from C{seq} on."""
        while len(self.epochs) > 1 and self.epochs[1].start_seq <= seq:
            del self.epochs[0]


# -- repair aggregation --------------------------------------------------------


class RepairPolicy:
    """Decide, per lost event, between answering each member over TLS and
    sending the event once more to the group (NORM NACK aggregation,
    RFC 5740 section 5.5.3).

    A request starts a window of C{window} seconds for each event it
    names; when the window ends, an event asked for by at least
    C{threshold} members is re-multicast once, the others are answered
    over TLS to each member who asked.  Requests for an event re-multicast
    less than C{holdoff} seconds ago are ignored.
    """

    def __init__(
        self,
        window: float = REPAIR_WINDOW,
        threshold: int = REPAIR_THRESHOLD,
        holdoff: float = REPAIR_HOLDOFF,
    ) -> None:
        self.window = window
        self.threshold = threshold
        self.holdoff = holdoff
        self._asked: dict[int, tuple[float, set[Member]]] = {}
        self._resent: dict[int, float] = {}
        self.counts: collections.Counter[str] = collections.Counter()

    def request(self, member: Member, seqs: Iterable[int], now: float) -> None:
        """Record that C{member} asked for C{seqs}."""
        for seq in seqs:
            until = self._resent.get(seq)
            if until is not None and now < until:
                self.counts["suppressed"] += 1
                continue
            entry = self._asked.get(seq)
            if entry is None:
                entry = self._asked[seq] = (now + self.window, set())
            entry[1].add(member)

    def forget(self, member: Member) -> None:
        """C{member} left: drop what it asked for."""
        for seq, (_, members) in list(self._asked.items()):
            members.discard(member)
            if not members:
                del self._asked[seq]

    def due(self, now: float) -> tuple[dict[int, set[Member]], dict[Member, list[int]]]:
        """Events whose window has ended: those to re-multicast (with who
        asked), and those to send each member over TLS (sorted)."""
        again: dict[int, set[Member]] = {}
        each: dict[Member, list[int]] = {}
        for seq in sorted(self._asked):
            deadline, members = self._asked[seq]
            if deadline > now:
                continue
            del self._asked[seq]
            if len(members) >= self.threshold:
                again[seq] = members
                self._resent[seq] = now + self.holdoff
                self.counts["remulticast"] += 1
            else:
                for member in members:
                    each.setdefault(member, []).append(seq)
                self.counts["tls"] += len(members)
        for seq, until in list(self._resent.items()):
            if until <= now:
                del self._resent[seq]
        return again, each

    def wake_at(self) -> float | None:
        """When L{due} has something to do."""
        if not self._asked:
            return None
        return min(deadline for deadline, _ in self._asked.values())


# -- the sender ----------------------------------------------------------------


class FanoutSender:
    """Fan-out for one room on the host.

    C{identity} is the room's C{(Q, R)}; C{private_key} is the host key
    whose public half is C{Q}.  C{group} and C{port} are where datagrams
    go (they are told to members in C{KEY} lines).  C{last_seq} is the
    room's highest sequence number so far (heartbeats carry the newest).

    @ivar counts: datagrams, bytes, heartbeats, rotations, events sent over
        TLS because they were too big, by name.
    """

    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        identity: RoomIdentity,
        group: str,
        port: int,
        random_bytes: Callable[[int], bytes],
        last_seq: int = 0,
        rate: float = SEND_RATE,
        burst: float = SEND_BURST,
        policy: RepairPolicy | None = None,
        cache_events: int = CACHE_EVENTS,
        max_backlog: int = MAX_BACKLOG,
    ) -> None:
        self._key = private_key
        self.identity = identity
        self.group = group
        self.port = port
        self.last_seq = last_seq
        self.keys = EpochKeys(random_bytes, last_seq + 1)
        self.policy = policy if policy is not None else RepairPolicy()
        self._members: dict[Member, bool] = {}
        self._departures: list[int] = []
        self._pending: collections.deque[tuple[int, bytes]] = collections.deque()
        self._again: collections.deque[tuple[int, bytes]] = collections.deque()
        self._cache: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._cache_events = cache_events
        self._max_backlog = max_backlog
        #: The newest event left out of multicast for the backlog bound:
        #: repairs of it and older ones always go over TLS.
        self._skipped_upto = 0
        self._bucket = TokenBucket(burst, rate)
        self._heartbeat_at: float | None = None
        self._heartbeat_step = 0
        self._token_at = 0.0
        self.counts: collections.Counter[str] = collections.Counter()

    # -- membership

    def is_multicast(self, member: Member) -> bool:
        """Whether C{member} takes this room's events by multicast (and so
        gets none over TLS but repairs and events too big for a datagram)."""
        return self._members.get(member, False)

    @property
    def members(self) -> tuple[Member, ...]:
        """Members holding the current key."""
        return tuple(self._members)

    def member_joined(self, member: Member, now: float) -> list[SenderAction]:
        """A member with the capability is in the room: give it the current
        key.  It stays on TLS delivery until it sends START."""
        self._members.setdefault(member, False)
        if self._heartbeat_at is None:
            self._restart_heartbeats(now)
        return [SendKey(member, self._grant())]

    def member_left(self, member: Member, from_seq: int) -> list[SenderAction]:
        """C{member} left the room; C{from_seq} is the sequence number of
        its leave event (PART, QUIT, KICK), the first event it must not be
        able to read.  The rotation happens at the next L{flush};
        departures flushed together share one new key, which none of them
        receives.  Must be called before the flush that sends C{from_seq}.
        """
        if self._members.pop(member, None) is None:
            return []
        self.policy.forget(member)
        self._departures.append(from_seq)
        return []

    def rekey(self) -> list[SenderAction]:
        """Start a new epoch at the next flush without anyone leaving
        (periodic rekeying, as MLS commits update keys); the remaining
        members get the new key as on a departure."""
        self._departures.append(self.last_seq + 1)
        return []

    def request(
        self, member: Member, request: MemberRequest, now: float
    ) -> list[SenderAction]:
        """A parsed C{FANOUT} line from C{member} (see
        L{MemberRequest.from_params}).  Requests from members that hold
        no key are ignored (the edge answers them with C{FAIL})."""
        if member not in self._members:
            self.counts["request-not-member"] += 1
            return []
        if request.verb == "START":
            self._members[member] = True
            return [
                SendMode(member, ModeChange(self.identity.room, True, self.last_seq))
            ]
        if request.verb == "STOP":
            self._members[member] = False
            return [
                SendMode(member, ModeChange(self.identity.room, False, self.last_seq))
            ]
        if request.verb == "SYNC":
            return [SendKey(member, self._grant())]
        return self._repair(member, request.ranges, now)

    # -- sending

    def flush(
        self, now: float, events: Sequence[tuple[int, bytes]] = ()
    ) -> list[SenderAction]:
        """End of a turn (or the timer): take the turn's committed events
        (C{(seq, line)}, oldest first, lines as a TLS member with
        message-tags and server-time gets them, CR LF optional), rotate the
        key if members left, and return what to send."""
        actions: list[SenderAction] = []
        if self._departures:
            actions += self._rotate(min(self._departures))
            self._departures = []
        oversized: list[tuple[int, bytes]] = []
        for seq, line in events:
            line = line.rstrip(b"\r\n")
            if seq <= self.last_seq:
                self.counts["stale-event"] += 1
                continue
            self.last_seq = seq
            self._cache[seq] = line
            if len(line) > MAX_LINE_BYTES:
                oversized.append((seq, line))
            self._pending.append((seq, line))
        while len(self._cache) > self._cache_events:
            self._cache.popitem(last=False)
        excess = len(self._pending) - self._max_backlog
        if excess > 0:
            for _ in range(excess):
                self._skipped_upto = self._pending.popleft()[0]
            self.counts["backlog-skipped"] += excess
        if oversized:
            # Per-member work only for the rare event too big to multicast.
            multicast = tuple(m for m, on in self._members.items() if on)
            if multicast:
                self.counts["over-tls"] += len(oversized)
                actions.append(SendEvents(multicast, tuple(oversized)))
        actions += self._repairs_due(now)
        actions += self._send(now)
        if (
            self._heartbeat_at is not None
            and now >= self._heartbeat_at
            and self._members
        ):
            actions.append(SendDatagram(self._heartbeat()))
            self._heartbeat_step = min(self._heartbeat_step + 1, len(HEARTBEATS) - 1)
            self._heartbeat_at = now + HEARTBEATS[self._heartbeat_step]
        if not self._members:
            self._heartbeat_at = None
        return actions

    @property
    def wake_at(self) -> float | None:
        """When L{flush} must next be called with no events."""
        times = []
        if self._heartbeat_at is not None:
            times.append(self._heartbeat_at)
        repair = self.policy.wake_at()
        if repair is not None:
            times.append(repair)
        if self._pending or self._again:
            times.append(self._token_at)
        return min(times) if times else None

    # -- inside

    def _grant(self) -> KeyGrant:
        current = self.keys.current
        return KeyGrant(
            room=self.identity.room,
            epoch_key=current.key,
            group=self.group,
            port=self.port,
            next_counter=current.counter,
        )

    def _rotate(self, from_seq: int) -> list[SenderAction]:
        first = self._first_unsealed()
        if from_seq < first:
            # The edge flushed the leave event before telling us: the
            # departed may have read events up to first - 1.
            self.counts["late-departure"] += 1
        self.keys.rotate(max(from_seq, first))
        self.counts["rotations"] += 1
        grant = self._grant()
        return [SendKey(member, grant) for member in self._members]

    def _first_unsealed(self) -> int:
        if self._pending:
            return self._pending[0][0]
        return self.last_seq + 1

    def _repair(self, member: Member, ranges: Ranges, now: float) -> list[SenderAction]:
        clipped = tuple(
            (a, min(b, self.last_seq)) for a, b in ranges if a <= self.last_seq
        )
        if not clipped:
            self.counts["repair-of-future"] += 1
            return []
        oldest = next(iter(self._cache), self.last_seq + 1)
        uncached = tuple((a, min(b, oldest - 1)) for a, b in clipped if a < oldest)
        cached = [seq for a, b in clipped for seq in range(max(a, oldest), b + 1)]
        actions: list[SenderAction] = []
        if uncached:
            actions.append(SendRepair(member, uncached, (), uncached))
        if not self._members[member]:
            # A member on TLS delivery may not hear the group at all.
            return actions + self._answer_over_tls(member, cached)
        self.policy.request(member, cached, now)
        return actions

    def _answer_over_tls(
        self, member: Member, seqs: Sequence[int]
    ) -> list[SenderAction]:
        if not seqs:
            return []
        events = tuple((s, self._cache[s]) for s in seqs if s in self._cache)
        # Events evicted from the cache since the request came are read
        # from the history store, never reported as skipped.
        oldest = next(iter(self._cache), self.last_seq + 1)
        evicted = [s for s in seqs if s < oldest and s not in self._cache]
        return [SendRepair(member, _to_ranges(seqs), events, _to_ranges(evicted))]

    def _repairs_due(self, now: float) -> list[SenderAction]:
        again, each = self.policy.due(now)
        actions: list[SenderAction] = []
        for member, seqs in each.items():
            actions += self._answer_over_tls(member, seqs)
        for seq, members in again.items():
            line = self._cache.get(seq)
            if line is None:
                continue
            if len(line) > MAX_LINE_BYTES or seq <= self._skipped_upto:
                # Never in a datagram (too big, or left out when the room
                # was over its multicast budget: sending it again would
                # only refill the backlog): answer each asker over TLS.
                for member in members:
                    actions += self._answer_over_tls(member, [seq])
            else:
                self._again.append((seq, line))
        return actions

    def _send(self, now: float) -> list[SenderAction]:
        actions: list[SenderAction] = []
        while (self._again or self._pending) and self._bucket.take(now):
            if self._again:
                # Re-multicasts first, under the current epoch: whoever
                # holds it is a member now.
                data = self._pack(self._again, self.keys.current, KIND_DATA)
                self.counts["remulticast-datagrams"] += 1
            else:
                epoch = self.keys.for_seq(self._pending[0][0])
                data = self._pack(self._pending, epoch, KIND_DATA)
            actions.append(SendDatagram(data))
            self.counts["datagrams"] += 1
            self.counts["bytes"] += len(data)
        self.keys.erase_before(self._first_unsealed())
        if self._again or self._pending:
            # At least 1 ms on: float rounding can leave a token a hair
            # short, and a timer at "now" would spin.
            self._token_at = now + max(self._bucket.wait(now), 0.001)
        if actions:
            self._restart_heartbeats(now)
        return actions

    def _pack(
        self, queue: collections.deque[tuple[int, bytes]], epoch: SenderEpoch, kind: int
    ) -> bytes:
        """Take consecutive events of one epoch off C{queue} while they fit
        and seal them into one datagram."""
        first = queue[0][0]
        lines: list[bytes | None] = []
        size = 0
        next_epoch_start = min(
            (e.start_seq for e in self.keys.epochs if e.start_seq > epoch.start_seq),
            default=None,
        )
        while queue:
            seq, line = queue[0]
            if seq != first + len(lines):
                break
            if (
                queue is self._pending
                and next_epoch_start is not None
                and seq >= next_epoch_start
            ):
                break
            entry: bytes | None = line if len(line) <= MAX_LINE_BYTES else None
            cost = 2 + (len(entry) if entry is not None else 0)
            if size + cost > MAX_PLAINTEXT:
                break
            lines.append(entry)
            size += cost
            queue.popleft()
        self.counts["events"] += len(lines)
        return seal(
            self._key,
            self.identity,
            epoch.key,
            kind,
            epoch.take_counter(),
            first,
            encode_events(lines),
        )

    def _heartbeat(self) -> bytes:
        epoch = self.keys.current
        self.counts["heartbeats"] += 1
        # The newest event already multicast: events still waiting for a
        # pacing token must not look lost.
        return seal(
            self._key,
            self.identity,
            epoch.key,
            KIND_HEARTBEAT,
            epoch.take_counter(),
            self._first_unsealed() - 1,
            b"",
        )

    def _restart_heartbeats(self, now: float) -> None:
        self._heartbeat_step = 0
        self._heartbeat_at = now + HEARTBEATS[0]


def _to_ranges(seqs: Sequence[int]) -> Ranges:
    ranges: list[tuple[int, int]] = []
    for seq in sorted(seqs):
        if ranges and ranges[-1][1] >= seq - 1:
            ranges[-1] = (ranges[-1][0], max(seq, ranges[-1][1]))
        else:
            ranges.append((seq, seq))
    return tuple(ranges)
