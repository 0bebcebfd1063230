# -*- test-case-name: tests.test_fanout_codec -*-
"""Fan-out wire formats: the datagram, its sealing and checking, and the
parameters of the C{FANOUT} IRC lines.

The formats are specified in C{docs/protocol-fanout.rst}; this module
follows that document.  A fan-out datagram carries one or more consecutive
room events (the exact lines a TLS member with C{message-tags} and
C{server-time} gets), encrypted with ChaCha20-Poly1305 (RFC 8439) under the
room's current epoch key, and ends with one Ed25519 signature by the host key
C{Q} over every byte before it.  Keys travel only over each member's own TLS
connection, in a C{FANOUT #room KEY ...} line (L{KeyGrant}).

The host side (L{chatroom.core.fanout_sender}) and the member side
(L{chatroom.core.fanout_receiver}) are built on the value objects here.
Every malformed input raises L{ParseError} with a reason token, and
nothing else.  This module is pure: no sockets, no clock, no Twisted.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import struct
from typing import Iterable, Sequence

import attrs
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from chatroom.core.errors import ParseError
from chatroom.core.names import casefold

CAPABILITY = "chatroom.invalid/fanout"
"""The IRCv3 capability a client requests to be offered multicast delivery.

IRCv3 vendor capabilities are named C{<domain>/<name>}.  The project owns no
domain (its homepage is C{example.invalid}); C{.invalid} can never be
registered (RFC 2606), so no real vendor's capability can ever collide with
this one."""

COMMAND = "FANOUT"
"""The IRC command of every fan-out line, in both directions."""

MAGIC = b"CRFO"
"""First four bytes of every fan-out datagram ("ChatRoom Fan-Out")."""

VERSION = 1

KIND_DATA = 1
KIND_HEARTBEAT = 2

ALGORITHM = "chacha20-poly1305"
"""The only AEAD of version 1 (RFC 8439): fast without AES instructions,
which the small routers of community networks mostly lack."""

KEY_SIZE = 32
TAG_SIZE = 16
NONCE_SIZE = 12
SIGNATURE_SIZE = 64
ROOM_ID_SIZE = 8
PUBLIC_KEY_SIZE = 32

MAX_DATAGRAM_SIZE = 1199
"""LIMITS.md "Multicast fan-out": a datagram is less than 1200 bytes (the
IPv6 minimum MTU, 1280, less IP and UDP headers with room to spare).  An
event that does not fit goes to multicast members over TLS."""

MAX_EPOCH = 2**32 - 1
MAX_COUNTER = 2**64 - 1
MAX_SEQ = 2**63 - 1
"""Sequence numbers are SQLite integers (signed 64 bits)."""

MAX_REPAIR_EVENTS = 1000
"""LIMITS.md: at most 1000 events per repair request; bigger gaps use
CHATHISTORY."""

_HEADER = struct.Struct("!4sBB8sIQQ")
HEADER_SIZE = _HEADER.size  # 34
OVERHEAD = HEADER_SIZE + TAG_SIZE + SIGNATURE_SIZE  # 114
MAX_PLAINTEXT = MAX_DATAGRAM_SIZE - OVERHEAD  # 1085
_ENTRY_HEAD = struct.Struct("!H")
MAX_LINE_BYTES = MAX_PLAINTEXT - _ENTRY_HEAD.size
"""The longest event line (without CR LF) that fits in a datagram alone."""

_ROOM_ID_CONTEXT = b"chatroom fanout room id v1\x00"


def room_key(room: str) -> str:
    """The case-folded room name that names a room in msgids and here."""
    return casefold(room)


@attrs.frozen
class RoomIdentity:
    """A room as C{(Q, R)}: the host's raw Ed25519 public key and the name.

    C{room_id} is the 8-byte compact form a datagram carries; C{aad} is
    what every datagram's AEAD additionally authenticates (the full identity,
    so two rooms whose compact ids collide still cannot read each other).
    """

    q: bytes = attrs.field()
    room: str = attrs.field()

    @q.validator
    def _check_q(self, attribute: object, value: bytes) -> None:
        if not isinstance(value, bytes) or len(value) != PUBLIC_KEY_SIZE:
            raise ParseError("A host key is 32 raw bytes.", "bad-key")

    @room.validator
    def _check_room(self, attribute: object, value: str) -> None:
        if not isinstance(value, str) or not value or len(value.encode()) > 64:
            raise ParseError("A room name is 1 to 64 bytes.", "bad-room-name")

    #: First 8 bytes of SHA-256(context || Q || casefold(R)).
    room_id: bytes = attrs.field(init=False, eq=False, repr=False)
    #: C{Q || casefold(R)}, appended to the header as AEAD data.
    aad_suffix: bytes = attrs.field(init=False, eq=False, repr=False)

    @room_id.default
    def _room_id(self) -> bytes:
        return hashlib.sha256(
            _ROOM_ID_CONTEXT + self.q + room_key(self.room).encode("utf-8")
        ).digest()[:ROOM_ID_SIZE]

    @aad_suffix.default
    def _aad_suffix(self) -> bytes:
        return self.q + room_key(self.room).encode("utf-8")


@attrs.frozen
class EpochKey:
    """One epoch's AEAD key: C{epoch} (1 to 2**32-1) and 32 random bytes."""

    epoch: int = attrs.field()
    key: bytes = attrs.field(repr=False)

    @epoch.validator
    def _check_epoch(self, attribute: object, value: int) -> None:
        if not isinstance(value, int) or not 1 <= value <= MAX_EPOCH:
            raise ParseError("An epoch is 1 to 2**32-1.", "bad-epoch")

    @key.validator
    def _check_key(self, attribute: object, value: bytes) -> None:
        if not isinstance(value, bytes) or len(value) != KEY_SIZE:
            raise ParseError("An epoch key is 32 bytes.", "bad-key")

    #: The AEAD with this key, made once.
    aead: ChaCha20Poly1305 = attrs.field(init=False, eq=False, repr=False)

    @aead.default
    def _aead(self) -> ChaCha20Poly1305:
        return ChaCha20Poly1305(self.key)


def nonce(epoch: int, counter: int) -> bytes:
    """The 96-bit AEAD nonce: epoch (32 bits) then datagram counter (64).

    The host draws a fresh random key for every epoch and seals each
    datagram under it with the next value of that epoch's counter, which
    only goes up and is never persisted (a restarted host draws new keys);
    so no (key, nonce) pair ever repeats.
    """
    return struct.pack("!IQ", epoch, counter)


@attrs.frozen
class Datagram:
    """A fan-out datagram as it is on the wire, before any check but the
    cheap ones in L{from_bytes}.

    C{seq} is the first event's sequence number (data) or the latest
    sequence number the host has sent in the room (heartbeat).  C{sealed}
    is the ChaCha20-Poly1305 ciphertext with its 16-byte tag.
    """

    kind: int
    room_id: bytes
    epoch: int
    counter: int
    seq: int
    sealed: bytes
    signature: bytes = attrs.field(repr=False)

    def header(self) -> bytes:
        """The first 34 bytes: magic, version, kind, room, epoch, counter, seq."""
        return _HEADER.pack(
            MAGIC, VERSION, self.kind, self.room_id, self.epoch, self.counter, self.seq
        )

    def signed_bytes(self) -> bytes:
        """Every byte the signature covers."""
        return self.header() + self.sealed

    def to_bytes(self) -> bytes:
        """The datagram."""
        return self.signed_bytes() + self.signature

    @classmethod
    def from_bytes(cls, data: bytes) -> Datagram:
        """Split a datagram into its fields after the cheap checks (size,
        magic, version, kind, ranges).  Nothing is decrypted or verified.

        @raise ParseError: C{oversized}, C{truncated}, C{bad-magic},
            C{unsupported-version}, C{unknown-kind}, C{malformed}.
        """
        if len(data) > MAX_DATAGRAM_SIZE:
            raise ParseError("A fan-out datagram is less than 1200 bytes.", "oversized")
        if len(data) < OVERHEAD:
            raise ParseError("The fan-out datagram is cut short.", "truncated")
        magic, version, kind, room_id, epoch, counter, seq = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise ParseError("This is not a fan-out datagram.", "bad-magic")
        if version != VERSION:
            raise ParseError(
                f"Fan-out version {version} is not supported.", "unsupported-version"
            )
        if kind not in (KIND_DATA, KIND_HEARTBEAT):
            raise ParseError(
                f"Fan-out datagram kind {kind} is unknown.", "unknown-kind"
            )
        if epoch == 0 or seq > MAX_SEQ:
            raise ParseError(
                "The epoch or sequence number is out of range.", "malformed"
            )
        sealed = data[HEADER_SIZE:-SIGNATURE_SIZE]
        if kind == KIND_HEARTBEAT and len(sealed) != TAG_SIZE:
            raise ParseError("A heartbeat carries no events.", "malformed")
        if kind == KIND_DATA and len(sealed) < TAG_SIZE + _ENTRY_HEAD.size:
            raise ParseError("A data datagram carries at least one event.", "truncated")
        return cls(
            kind=kind,
            room_id=room_id,
            epoch=epoch,
            counter=counter,
            seq=seq,
            sealed=sealed,
            signature=data[-SIGNATURE_SIZE:],
        )

    def open(self, identity: RoomIdentity, key: EpochKey) -> bytes:
        """Decrypt and authenticate the payload with the epoch key.

        @raise ParseError: C{bad-ciphertext} when the key is not the one
            the datagram was sealed with, or any byte of the header, the
            room identity or the ciphertext was changed.
        """
        try:
            return key.aead.decrypt(
                nonce(self.epoch, self.counter),
                self.sealed,
                self.header() + identity.aad_suffix,
            )
        except InvalidTag:
            raise ParseError(
                "The datagram does not decrypt under the room key.", "bad-ciphertext"
            ) from None

    def verify(self, q: bytes) -> None:
        """Check the host's signature.

        @raise ParseError: C{bad-signature}.
        """
        try:
            Ed25519PublicKey.from_public_bytes(q).verify(
                self.signature, self.signed_bytes()
            )
        except (InvalidSignature, ValueError):
            raise ParseError(
                "The datagram is not signed by the room's host.", "bad-signature"
            ) from None


def encode_events(lines: Sequence[bytes | None]) -> bytes:
    """The plaintext of a data datagram: per event a 2-byte length and the
    line (no CR LF); length 0 (C{None} here) marks an event the host sends
    to multicast members over TLS instead."""
    out = []
    for line in lines:
        if line is None:
            out.append(_ENTRY_HEAD.pack(0))
        else:
            out.append(_ENTRY_HEAD.pack(len(line)) + line)
    return b"".join(out)


def decode_events(plaintext: bytes) -> tuple[bytes | None, ...]:
    """Split a data plaintext into event lines (C{None} for "over TLS").

    @raise ParseError: C{malformed} when a length runs past the end, a
        line is not a valid single line, or there is no event.
    """
    lines: list[bytes | None] = []
    offset = 0
    while offset < len(plaintext):
        if offset + _ENTRY_HEAD.size > len(plaintext):
            raise ParseError("An event length is cut short.", "malformed")
        (length,) = _ENTRY_HEAD.unpack_from(plaintext, offset)
        offset += _ENTRY_HEAD.size
        if offset + length > len(plaintext):
            raise ParseError("An event runs past the datagram.", "malformed")
        line = plaintext[offset : offset + length]
        offset += length
        if length == 0:
            lines.append(None)
            continue
        check_event_line(line)
        lines.append(line)
    if not lines:
        raise ParseError("A data datagram carries at least one event.", "malformed")
    return tuple(lines)


def check_event_line(line: bytes) -> bytes:
    """Return C{line} if it can travel in a datagram: non-empty, no CR, LF
    or NUL; else raise L{ParseError} (C{malformed})."""
    if not line or b"\r" in line or b"\n" in line or b"\0" in line:
        raise ParseError(
            "An event is one non-empty line without CR, LF or NUL.", "malformed"
        )
    return line


def seal(
    private_key: Ed25519PrivateKey,
    identity: RoomIdentity,
    key: EpochKey,
    kind: int,
    counter: int,
    seq: int,
    plaintext: bytes,
) -> bytes:
    """Encrypt C{plaintext} under C{key} with nonce C{(epoch, counter)} and
    sign the result with the host key.  Returns the datagram bytes.

    @raise ParseError: C{oversized} when the result would not fit in
        L{MAX_DATAGRAM_SIZE}.
    """
    if len(plaintext) > MAX_PLAINTEXT:
        raise ParseError("The events do not fit in one datagram.", "oversized")
    if not 0 <= counter <= MAX_COUNTER or not 0 <= seq <= MAX_SEQ:
        raise ParseError("Counter or sequence number out of range.", "malformed")
    header = _HEADER.pack(
        MAGIC, VERSION, kind, identity.room_id, key.epoch, counter, seq
    )
    sealed = key.aead.encrypt(
        nonce(key.epoch, counter), plaintext, header + identity.aad_suffix
    )
    signed = header + sealed
    return signed + private_key.sign(signed)


@attrs.frozen
class Opened:
    """What a datagram said, after decryption and verification.

    C{lines} is empty for a heartbeat, whose C{seq} is the latest sequence
    number sent; for data, C{lines[i]} is event C{seq + i} (C{None}: that
    event comes over TLS).
    """

    kind: int
    epoch: int
    counter: int
    seq: int
    lines: tuple[bytes | None, ...]

    @property
    def last_seq(self) -> int:
        """The highest sequence number this datagram vouches for."""
        if self.kind == KIND_HEARTBEAT:
            return self.seq
        return self.seq + len(self.lines) - 1


def open_datagram(datagram: Datagram, identity: RoomIdentity, key: EpochKey) -> Opened:
    """Decrypt, verify (in that order: the AEAD check is far cheaper and
    stops non-members), and decode a datagram.

    @raise ParseError: C{bad-ciphertext}, C{bad-signature}, C{malformed}.
    """
    plaintext = datagram.open(identity, key)
    datagram.verify(identity.q)
    return decode_payload(datagram, plaintext)


def decode_payload(datagram: Datagram, plaintext: bytes) -> Opened:
    """Decode the plaintext of a decrypted and verified datagram.

    @raise ParseError: C{malformed}.
    """
    lines: tuple[bytes | None, ...] = ()
    if datagram.kind == KIND_DATA:
        lines = decode_events(plaintext)
        if datagram.seq + len(lines) - 1 > MAX_SEQ or datagram.seq == 0:
            raise ParseError("The sequence numbers are out of range.", "malformed")
    return Opened(
        kind=datagram.kind,
        epoch=datagram.epoch,
        counter=datagram.counter,
        seq=datagram.seq,
        lines=lines,
    )


# -- the FANOUT IRC lines ----------------------------------------------------

_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,19})\Z")


def _parse_int(text: str, low: int, high: int, what: str) -> int:
    if not _DECIMAL.match(text):
        raise ParseError(f"The {what} is not a decimal number.", "bad-params")
    value = int(text)
    if not low <= value <= high:
        raise ParseError(f"The {what} is out of range.", "bad-params")
    return value


def _channel(room: str) -> str:
    return "#" + room


def _room_from_channel(text: str) -> str:
    if not text.startswith("#") or len(text) < 2 or len(text.encode()) > 65:
        raise ParseError("The FANOUT line names no room.", "bad-params")
    return text[1:]


@attrs.frozen
class KeyGrant:
    """Host to member: C{FANOUT #room KEY epoch algorithm key group port next}.

    C{key} is the 32-byte epoch key, sent as 64 lowercase hex digits;
    C{group} and C{port} say where datagrams go; C{next_counter} is the
    counter of the next datagram the host will seal under this epoch, which
    (re)starts the receiver's replay window.
    """

    room: str
    epoch_key: EpochKey
    group: str
    port: int
    next_counter: int = 0
    algorithm: str = ALGORITHM

    def to_params(self) -> tuple[str, ...]:
        """The IRC parameters after the command."""
        return (
            _channel(self.room),
            "KEY",
            str(self.epoch_key.epoch),
            self.algorithm,
            self.epoch_key.key.hex(),
            self.group,
            str(self.port),
            str(self.next_counter),
        )

    @classmethod
    def from_params(cls, params: Sequence[str]) -> KeyGrant:
        """Parse the parameters of a KEY line.

        @raise ParseError: C{bad-params}; C{unsupported-algorithm} when the
            algorithm is not L{ALGORITHM} (the member then stays on TLS).
        """
        if len(params) != 8 or params[1] != "KEY":
            raise ParseError(
                "A KEY line has seven parameters after the room.", "bad-params"
            )
        room = _room_from_channel(params[0])
        epoch = _parse_int(params[2], 1, MAX_EPOCH, "epoch")
        if params[3] != ALGORITHM:
            raise ParseError(
                f"Algorithm {params[3]!r} is not supported.", "unsupported-algorithm"
            )
        if not re.fullmatch(r"[0-9a-f]{64}", params[4]):
            raise ParseError("The key is not 64 lowercase hex digits.", "bad-params")
        try:
            group = ipaddress.IPv4Address(params[5])
        except ValueError:
            raise ParseError(
                "The group is not an IPv4 address.", "bad-params"
            ) from None
        if not group.is_multicast:
            raise ParseError("The group is not a multicast address.", "bad-params")
        port = _parse_int(params[6], 1, 65535, "port")
        counter = _parse_int(params[7], 0, MAX_COUNTER, "counter")
        return cls(
            room=room,
            epoch_key=EpochKey(epoch, bytes.fromhex(params[4])),
            group=str(group),
            port=port,
            next_counter=counter,
        )


@attrs.frozen
class ModeChange:
    """Host to member: C{FANOUT #room MODE MULTICAST|TLS seq}.

    Events up to and including C{seq} were sent the old way; events after
    it come the new way (datagrams and repairs, or TLS).
    """

    room: str
    multicast: bool
    seq: int

    def to_params(self) -> tuple[str, ...]:
        """The IRC parameters after the command."""
        return (
            _channel(self.room),
            "MODE",
            "MULTICAST" if self.multicast else "TLS",
            str(self.seq),
        )

    @classmethod
    def from_params(cls, params: Sequence[str]) -> ModeChange:
        """Parse a MODE line; L{ParseError} (C{bad-params})."""
        if (
            len(params) != 4
            or params[1] != "MODE"
            or params[2] not in ("MULTICAST", "TLS")
        ):
            raise ParseError("A MODE line is MODE MULTICAST|TLS seq.", "bad-params")
        return cls(
            _room_from_channel(params[0]),
            params[2] == "MULTICAST",
            _parse_int(params[3], 0, MAX_SEQ, "sequence number"),
        )


Ranges = tuple[tuple[int, int], ...]


def format_ranges(ranges: Iterable[tuple[int, int]]) -> str:
    """C{((5, 7), (12, 12))} -> C{"5-7,12"}."""
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


MAX_RANGES_TEXT = 450
"""Characters of ranges a REPAIR or REPAIRED line may carry, so the line
stays under IRC's 512 bytes with a 64-byte room name."""


def parse_ranges(text: str, limit: int = MAX_REPAIR_EVENTS) -> Ranges:
    """Parse C{"5-7,12"}: ascending, disjoint ranges of sequence numbers
    (each at least 1) covering at most C{limit} events in all.

    @raise ParseError: C{bad-params}, or C{too-many} beyond C{limit}.
    """
    if not text or len(text) > MAX_RANGES_TEXT:
        raise ParseError("The ranges are empty or too long.", "bad-params")
    ranges: list[tuple[int, int]] = []
    total = 0
    for part in text.split(","):
        first_text, dash, last_text = part.partition("-")
        first = _parse_int(first_text, 1, MAX_SEQ, "sequence number")
        last = _parse_int(last_text, 1, MAX_SEQ, "sequence number") if dash else first
        if last < first or (ranges and first <= ranges[-1][1]):
            raise ParseError("Ranges go up and do not overlap.", "bad-params")
        total += last - first + 1
        if total > limit:
            raise ParseError(f"At most {limit} events per request.", "too-many")
        ranges.append((first, last))
    return tuple(ranges)


@attrs.frozen
class Repaired:
    """Host to member: C{FANOUT #room REPAIRED ranges}: every event in
    C{ranges} that exists has been sent over TLS before this line; any
    still missing was never committed (a skipped sequence number)."""

    room: str
    ranges: Ranges

    def to_params(self) -> tuple[str, ...]:
        """The IRC parameters after the command."""
        return (_channel(self.room), "REPAIRED", format_ranges(self.ranges))

    @classmethod
    def from_params(cls, params: Sequence[str]) -> Repaired:
        """Parse a REPAIRED line; L{ParseError}."""
        if len(params) != 3 or params[1] != "REPAIRED":
            raise ParseError("A REPAIRED line is REPAIRED ranges.", "bad-params")
        return cls(_room_from_channel(params[0]), parse_ranges(params[2]))


@attrs.frozen
class MemberRequest:
    """Member to host: C{FANOUT #room START epoch}, C{STOP}, C{SYNC} or
    C{REPAIR ranges}.

    C{verb} is one of those four; C{epoch} is set for START, C{ranges}
    for REPAIR (at most 1000 events).
    """

    room: str
    verb: str
    epoch: int = 0
    ranges: Ranges = ()

    def to_params(self) -> tuple[str, ...]:
        """The IRC parameters after the command."""
        params: tuple[str, ...] = (_channel(self.room), self.verb)
        if self.verb == "START":
            params += (str(self.epoch),)
        elif self.verb == "REPAIR":
            params += (format_ranges(self.ranges),)
        return params

    @classmethod
    def from_params(cls, params: Sequence[str]) -> MemberRequest:
        """Parse what a member sent.

        @raise ParseError: C{bad-params}, C{too-many} (a repair over 1000
            events), C{unknown-verb}.
        """
        if len(params) < 2:
            raise ParseError("FANOUT needs a room and a verb.", "bad-params")
        room = _room_from_channel(params[0])
        verb = params[1].upper()
        if verb == "START" and len(params) == 3:
            return cls(room, verb, epoch=_parse_int(params[2], 1, MAX_EPOCH, "epoch"))
        if verb in ("STOP", "SYNC") and len(params) == 2:
            return cls(room, verb)
        if verb == "REPAIR" and len(params) == 3:
            return cls(room, verb, ranges=parse_ranges(params[2]))
        if verb in ("START", "STOP", "SYNC", "REPAIR"):
            raise ParseError(f"FANOUT {verb} has the wrong parameters.", "bad-params")
        raise ParseError(f"FANOUT {verb} is not a request.", "unknown-verb")
