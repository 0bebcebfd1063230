# -*- test-case-name: tests.test_discovery_receiver -*-
"""From datagram bytes to a verified value object, spending signature checks with care.

Every discovery datagram a node hears goes through one L{Receiver}.
Cheapest step first, it reads the datagram's envelope
(L{chatroom.core.discovery.read_envelope}: kind, and the signed
statement inside: an announcement, a goodbye, or the announcement an answer
carries), drops kinds the node has no use for, and decides whether the
statement needs its Ed25519 signature checked:

- not if the same bytes were verified recently (hosts repeat their
  announcements every minute; a bounded cache of the last 1024, which also
  saves parsing them again), nor if the owner already holds exactly that
  statement (the directory entry of a known room, a host's own
  announcements);
- otherwise only if the L{SignatureBudget} allows it: signature
  checks cost about 0.1-0.4 ms of CPU each (and parsing an announcement
  about a tenth of that), so a flood of forged datagrams must not be able
  to spend unbounded CPU, nor all of it.  A statement under an unknown key
  spends the budget before it is parsed.

Every dropped datagram is counted by reason in the owner's one C{drops}
counter (the L{chatroom.core.errors.ParseError} reason, or
C{signature-budget}); nothing is raised.

Pure: C{now} is passed in; no clock, no sockets.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Callable, Collection

from chatroom.core.discovery import (
    KIND_ANNOUNCEMENT,
    KIND_ANSWER,
    KIND_GOODBYE,
    KIND_QUERY,
    Announcement,
    Datagram,
    Goodbye,
    parse_datagram,
    read_envelope,
)
from chatroom.core.errors import ParseError
from chatroom.core.tokenbucket import KeyedRateLimit

SIGNED_PER_SOURCE_PER_SECOND = 20
"""Signature checks per second for datagrams from one source address whose
host key is not yet known (docs/protocol-discovery.rst, "Versioning and
limits")."""

SIGNED_PER_SECOND_TOTAL = 200
"""Signature checks per second for unknown host keys from all sources
together: a flood of forged announcements costs at most a few percent of a
core."""

SIGNED_PER_KNOWN_KEY_PER_SECOND = 5
"""Signature checks per second for datagrams claiming one host key the
directory already holds (a known room's new announcement or goodbye).  A
host changes its announcement rarely (a new address); 5 covers a burst."""

SIGNED_KNOWN_PER_SECOND_TOTAL = 50
"""Signature checks per second for all known host keys together.  This
share is separate from L{SIGNED_PER_SECOND_TOTAL}, so a flood under
new keys from many (spoofed) sources cannot crowd out a known room's
renewal; together the two cost at most 250 checks a second."""

MAX_BUDGETED_SOURCES = 1024
"""Source addresses (and known keys) whose buckets are remembered."""

VERIFIED_CACHE_SIZE = 1024
"""Recently verified statements, kept by their exact bytes, so a repeat is
not verified again."""

KIND_NAMES = {
    KIND_ANNOUNCEMENT: "announcement",
    KIND_GOODBYE: "goodbye",
    KIND_QUERY: "query",
    KIND_ANSWER: "answer",
}
"""Names of the datagram kinds, as used in the C{received-*} stats."""

ALL_KINDS = frozenset(KIND_NAMES)


class SignatureBudget:
    """How many signature checks may be spent, and on whose datagrams.

    Two shares, each a L{chatroom.core.tokenbucket.KeyedRateLimit}:

    - statements claiming a host key the node does not know are limited
      per source address (20 a second) and in all (200 a second);
    - statements claiming a known key (one the directory holds) are
      limited per key (5 a second) and in all (50 a second).

    A flood under fresh keys, from however many spoofed sources, spends
    only the first share; a known room's renewal is checked from the
    second.  (A flood that claims known keys spends the second share; the
    per-key buckets keep it from starving the other known keys beyond
    their share of the total, and a known room's unchanged announcement is
    never checked again at all: see L{Receiver}.)
    """

    def __init__(
        self,
        per_source: float = SIGNED_PER_SOURCE_PER_SECOND,
        total: float = SIGNED_PER_SECOND_TOTAL,
        per_known_key: float = SIGNED_PER_KNOWN_KEY_PER_SECOND,
        known_total: float = SIGNED_KNOWN_PER_SECOND_TOTAL,
        max_keys: int = MAX_BUDGETED_SOURCES,
    ) -> None:
        self.unknown: KeyedRateLimit[str] = KeyedRateLimit(per_source, total, max_keys)
        self.known: KeyedRateLimit[bytes] = KeyedRateLimit(
            per_known_key, known_total, max_keys
        )

    def allow(self, source: str, q: bytes, known: bool, now: float) -> bool:
        """Spend one check on a statement by key C{q} from C{source}
        (C{known}: the node holds C{q} already); C{False} if the share
        is spent."""
        if known:
            return self.known.allow(q, now)
        return self.unknown.allow(source, now)


def _never(statement: Announcement | Goodbye) -> bool:
    return False


class Receiver:
    """Decode, filter and verify datagrams; count every drop.

    C{drops} and C{stats} are the owner's counters.  C{accept} lists the
    kinds the owner handles; others are counted in C{stats["ignored"]}
    without a signature check (a host has no use for other hosts'
    announcements).  C{known_key(q)} says whether host key C{q} was
    verified before (L{RoomDirectory.knows_key
    <chatroom.core.directory.RoomDirectory.knows_key>});
    C{already_verified(statement)}, asked only for statements under known
    keys, whether the owner holds exactly that statement.
    """

    def __init__(
        self,
        drops: Counter[str],
        stats: Counter[str],
        accept: Collection[int] = ALL_KINDS,
        known_key: Callable[[bytes], bool] = lambda q: False,
        already_verified: Callable[[Announcement | Goodbye], bool] = _never,
        budget: SignatureBudget | None = None,
        cache_size: int = VERIFIED_CACHE_SIZE,
    ) -> None:
        self.drops = drops
        self.stats = stats
        self.accept = frozenset(accept)
        self.known_key = known_key
        self.already_verified = already_verified
        self.budget = budget if budget is not None else SignatureBudget()
        self.cache_size = cache_size
        self._verified: OrderedDict[bytes, Announcement | Goodbye] = OrderedDict()

    def receive(self, data: bytes, source: str, now: float) -> Datagram | None:
        """Return the datagram C{data} from address C{source} as a
        verified value object, or C{None} if it was dropped (counted in
        C{drops}) or ignored (counted in C{stats}).

        Cheapest first: the envelope (a few slices) says the kind and
        whose signature the datagram carries; a statement verified before
        is not parsed again (an announcement or goodbye) nor checked
        again; a statement under an unknown key spends the budget before
        it is even parsed, so a flood costs little more than its count.
        """
        try:
            envelope = read_envelope(data)
        except ParseError as e:
            self.drops[e.reason] += 1
            return None
        if envelope.kind not in self.accept:
            self.stats["ignored"] += 1
            return None
        if envelope.statement is None or envelope.key is None:
            return self._decode(data)  # a query: nothing signed
        cached = self._verified.get(envelope.statement)
        if cached is not None:
            self._verified.move_to_end(envelope.statement)
            self.stats["verified-before"] += 1
            return self._decode(data, known=cached)
        known = self.known_key(envelope.key)
        if not known and not self._spend(source, envelope.key, known, now):
            return None
        datagram = self._decode(data, count=False)
        if datagram is None or datagram.statement is None:
            return None
        statement = datagram.statement
        if known:
            if self.already_verified(statement):
                self.stats["verified-before"] += 1
                return self._accepted(datagram)
            if not self._spend(source, envelope.key, known, now):
                return None
        self.stats["signatures-checked"] += 1
        try:
            statement.verify()
        except ParseError as e:
            self.drops[e.reason] += 1
            return None
        self._verified[envelope.statement] = statement
        while len(self._verified) > self.cache_size:
            self._verified.popitem(last=False)
        return self._accepted(datagram)

    def _spend(self, source: str, key: bytes, known: bool, now: float) -> bool:
        if self.budget.allow(source, key, known, now):
            return True
        self.drops["signature-budget"] += 1
        return False

    def _decode(
        self,
        data: bytes,
        count: bool = True,
        known: Announcement | Goodbye | None = None,
    ) -> Datagram | None:
        """Parse without the signature check (reusing C{known}, a statement
        verified before); count a failure's reason."""
        try:
            datagram = parse_datagram(data, verify=False, known=known)
        except ParseError as e:
            self.drops[e.reason] += 1
            return None
        return self._accepted(datagram) if count else datagram

    def _accepted(self, datagram: Datagram) -> Datagram:
        self.stats[f"received-{KIND_NAMES[datagram.kind]}"] += 1
        return datagram
