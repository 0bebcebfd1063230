# -*- test-case-name: tests.test_discovery_codec -*-
"""Discovery datagrams: announcement, goodbye, query and answer, to and from bytes.

The wire format is specified in C{docs/protocol-discovery.rst}; this module
follows that document.  Every datagram starts with the same six-byte header
(magic C{CRDS}, version, kind).  Announcements and goodbyes end with one
Ed25519 signature over every byte before it, made by the host key C{Q} that
the datagram itself carries.  Queries and answers are unsigned; an answer
carries the host's signed announcement verbatim, so anybody can relay one and
nobody can forge one.

L{parse_datagram} is the one entry point from bytes to a value object;
L{read_envelope} says what a datagram claims to be (its kind, and whose
signature it carries) without parsing it, for receivers that must refuse a
flood cheaply.

Parsing is strict about the canonical form, so that
C{X.from_bytes(data).to_bytes() == data} for every datagram that parses, and a
relayed announcement is byte-for-byte the one the host signed.  Every
malformed input raises L{ParseError} and nothing else.

This module is pure: no sockets, no clock, no Twisted.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from typing import ClassVar, Iterable, Iterator, Sequence, Union

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from chatroom.core.errors import ParseError
from chatroom.core.names import short_fingerprint

MAGIC = b"CRDS"
"""The first four bytes of every discovery datagram ("ChatRoom DiScovery")."""

VERSION = 1
"""The only protocol version this module speaks; others are refused."""

KIND_ANNOUNCEMENT = 1
KIND_GOODBYE = 2
KIND_QUERY = 3
KIND_ANSWER = 4

HEADER_SIZE = 6
KEY_SIZE = 32
SIGNATURE_SIZE = 64
QUERY_ID_SIZE = 8

MAX_DATAGRAM_SIZE = 1199
"""Every discovery datagram is smaller than 1200 bytes (one IPv6 minimum MTU
minus headers, comfortably)."""

MAX_ANNOUNCEMENT_SIZE = 1024
"""An announcement (and a goodbye) must leave room to be wrapped in an answer."""

MAX_ROOM_NAME_BYTES = 64
MAX_ADDRESSES = 8
MAX_LIFETIME = 86400
"""Longest lifetime an announcement may claim, in seconds (one day)."""

MAX_COUNTER = 2**64 - 1

TLV_ROOM_NAME = 1
TLV_ADDRESS = 2
TLV_FINGERPRINT_PREFIX = 3
TLV_PADDING = 127

FLAG_PRIVATE = 0x01
FLAG_MULTICAST_DELIVERY = 0x02

_HEADER = struct.Struct("!4sBB")
_TLV_HEAD = struct.Struct("!BH")
_ANNOUNCEMENT_FIXED = struct.Struct("!32sQIB")
_GOODBYE_FIXED = struct.Struct("!32sQ")
_ANSWER_FIXED = struct.Struct("!8sIH")

# Characters that cannot appear in an IRC channel name (RFC 2812 section
# 1.3), plus every other control character.  The room is the channel "#R".
_FORBIDDEN_IN_ROOM = frozenset([chr(c) for c in range(0x20)] + ["\x7f", " ", ","])


def fingerprint_prefix_from_hex(text: str) -> bytes:
    """Turn a typed fingerprint (any even number of hex digits, at most 64,
    colons allowed) into the prefix bytes a L{Query} carries.

    Raises L{ParseError} with a sentence when the text is not hex.
    """
    cleaned = text.replace(":", "").strip().lower()
    if len(cleaned) % 2 or len(cleaned) > 64:
        raise ParseError(
            "A key fingerprint is an even number of hex digits, at most 64;"
            f" {text!r} is not one.",
            "bad-fingerprint",
        )
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise ParseError(
            f"A key fingerprint is written in hex digits; {text!r} is not.",
            "bad-fingerprint",
        ) from None


def raw_public_key(private_key: Ed25519PrivateKey) -> bytes:
    """Return the raw 32-byte public key C{Q} of an Ed25519 private key."""
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def check_room_name(room: str) -> str:
    """Return C{room} if it is a valid room name, else raise L{ParseError}.

    A room name is 1 to 64 bytes of UTF-8 without control characters,
    spaces or commas (so that C{#room} is a valid IRC channel).
    """
    if not isinstance(room, str):
        raise ParseError("A room name must be text.", "bad-room-name")
    try:
        encoded = room.encode("utf-8")
    except UnicodeEncodeError:
        raise ParseError(
            "A room name must be valid Unicode text.", "bad-room-name"
        ) from None
    if not 1 <= len(encoded) <= MAX_ROOM_NAME_BYTES:
        raise ParseError(
            f"A room name is 1 to {MAX_ROOM_NAME_BYTES} bytes of UTF-8;"
            f" this one is {len(encoded)}.",
            "bad-room-name",
        )
    if _FORBIDDEN_IN_ROOM.intersection(room):
        raise ParseError(
            "A room name cannot contain spaces, commas or control characters.",
            "bad-room-name",
        )
    return room


def _validate_room(instance: object, attribute: object, value: str) -> None:
    check_room_name(value)


def _validate_key(instance: object, attribute: object, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != KEY_SIZE:
        raise ParseError("A host key is 32 raw bytes.", "bad-key")


def _validate_counter(instance: object, attribute: object, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= MAX_COUNTER:
        raise ParseError(
            "An announcement counter is an unsigned 64-bit number.", "bad-counter"
        )


def _validate_query_id(instance: object, attribute: object, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != QUERY_ID_SIZE:
        raise ParseError("A query id is 8 bytes.", "bad-query-id")


def _validate_signature(instance: object, attribute: object, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != SIGNATURE_SIZE:
        raise ParseError("A signature is 64 bytes.", "bad-signature")


def _validate_extensions(
    instance: object, attribute: object, value: tuple[tuple[int, bytes], ...]
) -> None:
    for item in value:
        if (
            not isinstance(item, tuple)
            or len(item) != 2
            or not isinstance(item[0], int)
            or not isinstance(item[1], bytes)
        ):
            raise ParseError(
                "An extension field is a (type, bytes) pair.", "bad-extension"
            )
        kind, payload = item
        if kind in KNOWN_FIELD_TYPES or not 0 <= kind <= 255:
            raise ParseError(
                f"Field type {kind} is not an unknown extension type.",
                "bad-extension",
            )
        if len(payload) > 0xFFFF:
            raise ParseError("An extension field is too long.", "bad-extension")
    types = [kind for kind, _ in value]
    if types != sorted(types):
        raise ParseError(
            "Extension fields must be in ascending type order.", "bad-extension"
        )


KNOWN_FIELD_TYPES = frozenset(
    [TLV_ROOM_NAME, TLV_ADDRESS, TLV_FINGERPRINT_PREFIX, TLV_PADDING]
)
"""Field types this version knows; every other type is an unknown field,
kept and ignored (docs/protocol-discovery.rst, "Encoding")."""


def _to_extensions(value: Iterable[tuple[int, bytes]]) -> tuple[tuple[int, bytes], ...]:
    return tuple(tuple(item) for item in value)  # type: ignore[misc]


def _canonical_host(host: str) -> str:
    return str(ipaddress.ip_address(host))


@attrs.frozen
class RoomAddress:
    """Where a room's TLS server listens: an IPv4 or IPv6 address and a port.

    C{host} is kept in the canonical text form of L{ipaddress}
    (C{"192.0.2.10"}, C{"2001:db8::10"}); C{str()} gives C{host:port}
    with IPv6 hosts in brackets.
    """

    host: str = attrs.field(converter=_canonical_host)
    port: int = attrs.field()

    @port.validator
    def _check_port(self, attribute: object, value: int) -> None:
        if not isinstance(value, int) or not 1 <= value <= 65535:
            raise ParseError("A port is a number from 1 to 65535.", "bad-address")

    @classmethod
    def parse(cls, text: str) -> RoomAddress:
        """Read C{host:port} or C{[v6host]:port} as a people would type it."""
        try:
            if text.startswith("["):
                host, _, port = text[1:].partition("]:")
            else:
                host, _, port = text.rpartition(":")
            return cls(host, int(port))
        except (ValueError, TypeError):
            raise ParseError(
                f"{text!r} is not an address; write host:port or [v6host]:port.",
                "bad-address",
            ) from None

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    def to_bytes(self) -> bytes:
        """Encode as the value of an address field: family, address, port."""
        ip = ipaddress.ip_address(self.host)
        return bytes([ip.version]) + ip.packed + struct.pack("!H", self.port)

    @classmethod
    def from_bytes(cls, value: bytes) -> RoomAddress:
        """Decode the value of an address field; L{ParseError} if bad."""
        if len(value) == 7 and value[0] == 4:
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(
                value[1:5]
            )
        elif len(value) == 19 and value[0] == 6:
            ip = ipaddress.IPv6Address(value[1:17])
        else:
            raise ParseError("An address field is malformed.", "bad-address")
        (port,) = struct.unpack("!H", value[-2:])
        if port == 0:
            raise ParseError("An address field has port 0.", "bad-address")
        return cls(str(ip), port)


def _to_addresses(value: Iterable[RoomAddress | str]) -> tuple[RoomAddress, ...]:
    return tuple(
        a if isinstance(a, RoomAddress) else RoomAddress.parse(a) for a in value
    )


def _validate_addresses(
    instance: object, attribute: object, value: tuple[RoomAddress, ...]
) -> None:
    if not 1 <= len(value) <= MAX_ADDRESSES:
        raise ParseError(
            f"An announcement lists 1 to {MAX_ADDRESSES} addresses.", "bad-address"
        )


def _validate_lifetime(instance: object, attribute: object, value: int) -> None:
    if not isinstance(value, int) or not 1 <= value <= MAX_LIFETIME:
        raise ParseError(
            f"An announcement lifetime is 1 to {MAX_LIFETIME} seconds.",
            "bad-lifetime",
        )


def _validate_flags(instance: object, attribute: object, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= 255:
        raise ParseError("Announcement flags are one byte.", "bad-flags")


# ---------------------------------------------------------------------------
# Low-level reading and writing.


def _tlv(kind: int, value: bytes) -> bytes:
    return _TLV_HEAD.pack(kind, len(value)) + value


def _header(kind: int) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, kind)


def _iter_tlvs(body: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield (type, value) pairs, checking framing and ascending order."""
    offset = 0
    previous = -1
    while offset < len(body):
        if len(body) - offset < _TLV_HEAD.size:
            raise ParseError("A field header is cut short.", "truncated")
        kind, length = _TLV_HEAD.unpack_from(body, offset)
        offset += _TLV_HEAD.size
        if len(body) - offset < length:
            raise ParseError("A field is cut short.", "truncated")
        if kind < previous:
            raise ParseError("Fields are not in ascending type order.", "not-canonical")
        previous = kind
        yield kind, body[offset : offset + length]
        offset += length


def _check_header(data: bytes, kind: int | None) -> None:
    if not isinstance(data, bytes):
        raise ParseError("A datagram is a bytes object.", "not-bytes")
    if len(data) > MAX_DATAGRAM_SIZE:
        raise ParseError(
            f"A discovery datagram is at most {MAX_DATAGRAM_SIZE} bytes;"
            f" this one is {len(data)}.",
            "oversized",
        )
    if len(data) < HEADER_SIZE:
        raise ParseError("The datagram is shorter than its header.", "truncated")
    magic, version, found_kind = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ParseError("This is not a chatroom discovery datagram.", "bad-magic")
    if version != VERSION:
        raise ParseError(
            f"Discovery protocol version {version} is not supported"
            f" (this program speaks version {VERSION}).",
            "unsupported-version",
        )
    if kind is not None and found_kind != kind:
        raise ParseError(
            f"Expected datagram kind {kind}, found {found_kind}.", "wrong-kind"
        )


def _room_from_tlv(value: bytes) -> str:
    try:
        room = value.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("A room name is not valid UTF-8.", "bad-room-name") from None
    return check_room_name(room)


def _verify(q: bytes, signed: bytes, signature: bytes) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(q).verify(signature, signed)
    except (InvalidSignature, ValueError):
        raise ParseError(
            "The signature does not match the host key in the datagram.",
            "bad-signature",
        ) from None


def _sign(private_key: Ed25519PrivateKey, signed: bytes) -> bytes:
    return private_key.sign(signed)


# ---------------------------------------------------------------------------
# The four datagram kinds.


class _Signed:
    """What the two signed datagrams share: the wire form and the check.

    Subclasses have C{q}, C{room}, C{signature} and C{signed_bytes()}.
    """

    kind: ClassVar[int]
    q: bytes
    room: str
    signature: bytes
    _signed: bytes  # the encoded signed part, computed once per object

    def _encode_signed(self) -> bytes:
        raise NotImplementedError

    def _encode_once(self) -> int:
        """Encode the signed part and keep it; return the datagram size."""
        object.__setattr__(self, "_signed", self._encode_signed())
        return len(self._signed) + len(self.signature)

    def signed_bytes(self) -> bytes:
        """Every byte the signature covers: the whole datagram minus the
        signature."""
        return self._signed

    @property
    def key(self) -> tuple[bytes, str]:
        """The room's identity C{(Q, R)}."""
        return (self.q, self.room)

    def to_bytes(self) -> bytes:
        """The datagram: L{signed_bytes} followed by the signature."""
        return self.signed_bytes() + self.signature

    def verify(self) -> None:
        """Raise L{ParseError} unless the signature is C{q}'s."""
        _verify(self.q, self.signed_bytes(), self.signature)


@attrs.frozen
class Announcement(_Signed):
    """A host's signed statement: key C{q} hosts C{room} at C{addresses}.

    C{counter} is the host's persisted counter C{T}: a higher value for the
    same C{(q, room)} replaces every lower one.  C{lifetime} (seconds) is
    how long listeners keep it without hearing it again.  C{flags} is the
    raw flag byte (bits the program does not know are kept and ignored);
    use L{private} and L{multicast_delivery} to read it.
    C{extensions} holds unknown fields, kept so a relay stays verbatim.

    Build one with L{sign}; read one with L{from_bytes}, which
    checks the signature.
    """

    kind: ClassVar[int] = KIND_ANNOUNCEMENT
    q: bytes = attrs.field(validator=_validate_key)
    room: str = attrs.field(validator=_validate_room)
    addresses: tuple[RoomAddress, ...] = attrs.field(
        converter=_to_addresses, validator=_validate_addresses
    )
    counter: int = attrs.field(validator=_validate_counter)
    lifetime: int = attrs.field(validator=_validate_lifetime)
    flags: int = attrs.field(validator=_validate_flags)
    signature: bytes = attrs.field(validator=_validate_signature, repr=False)
    extensions: tuple[tuple[int, bytes], ...] = attrs.field(
        default=(), converter=_to_extensions, validator=_validate_extensions
    )
    _signed: bytes = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self._encode_once() > MAX_ANNOUNCEMENT_SIZE:
            raise ParseError(
                f"An announcement is at most {MAX_ANNOUNCEMENT_SIZE} bytes.",
                "oversized",
            )

    @property
    def statement(self) -> Announcement:
        """The host-signed statement this datagram carries: itself."""
        return self

    @property
    def private(self) -> bool:
        """True if joining needs a password or an allow-listed client key."""
        return bool(self.flags & FLAG_PRIVATE)

    @property
    def multicast_delivery(self) -> bool:
        """True if the host can deliver room events by multicast."""
        return bool(self.flags & FLAG_MULTICAST_DELIVERY)

    @property
    def short_fingerprint(self) -> str:
        """The host key's short fingerprint (see L{short_fingerprint})."""
        return short_fingerprint(self.q)

    @classmethod
    def sign(
        cls,
        private_key: Ed25519PrivateKey,
        room: str,
        addresses: Sequence[RoomAddress | str],
        counter: int,
        lifetime: int,
        private: bool = False,
        multicast_delivery: bool = False,
    ) -> Announcement:
        """Make and sign an announcement with the host's private key."""
        flags = (FLAG_PRIVATE if private else 0) | (
            FLAG_MULTICAST_DELIVERY if multicast_delivery else 0
        )
        unsigned = cls(
            q=raw_public_key(private_key),
            room=room,
            addresses=addresses,
            counter=counter,
            lifetime=lifetime,
            flags=flags,
            signature=bytes(SIGNATURE_SIZE),
        )
        return attrs.evolve(
            unsigned, signature=_sign(private_key, unsigned.signed_bytes())
        )

    def _encode_signed(self) -> bytes:
        fields = [(TLV_ROOM_NAME, self.room.encode("utf-8"))]
        fields += [(TLV_ADDRESS, a.to_bytes()) for a in self.addresses]
        fields += list(self.extensions)
        fields.sort(key=lambda f: f[0])
        return (
            _header(KIND_ANNOUNCEMENT)
            + _ANNOUNCEMENT_FIXED.pack(self.q, self.counter, self.lifetime, self.flags)
            + b"".join(_tlv(k, v) for k, v in fields)
        )

    @classmethod
    def from_bytes(cls, data: bytes, verify: bool = True) -> Announcement:
        """Parse and verify an announcement; L{ParseError} if anything
        is wrong, including the signature.  With C{verify=False} the
        signature is left for L{verify} (it is the costly step)."""
        _check_header(data, KIND_ANNOUNCEMENT)
        if len(data) > MAX_ANNOUNCEMENT_SIZE:
            raise ParseError(
                f"An announcement is at most {MAX_ANNOUNCEMENT_SIZE} bytes.",
                "oversized",
            )
        fixed_end = HEADER_SIZE + _ANNOUNCEMENT_FIXED.size
        if len(data) < fixed_end + SIGNATURE_SIZE:
            raise ParseError("The announcement is cut short.", "truncated")
        q, counter, lifetime, flags = _ANNOUNCEMENT_FIXED.unpack_from(data, HEADER_SIZE)
        signed, signature = data[:-SIGNATURE_SIZE], data[-SIGNATURE_SIZE:]
        room = None
        addresses = []
        extensions = []
        for kind, value in _iter_tlvs(signed[fixed_end:]):
            if kind == TLV_ROOM_NAME:
                if room is not None:
                    raise ParseError(
                        "The announcement names two rooms.", "not-canonical"
                    )
                room = _room_from_tlv(value)
            elif kind == TLV_ADDRESS:
                addresses.append(RoomAddress.from_bytes(value))
            elif kind in KNOWN_FIELD_TYPES:
                raise ParseError(
                    f"Field type {kind} does not belong in an announcement.",
                    "not-canonical",
                )
            else:
                extensions.append((kind, value))
        if room is None:
            raise ParseError("The announcement names no room.", "truncated")
        result = cls(
            q=q,
            room=room,
            addresses=addresses,
            counter=counter,
            lifetime=lifetime,
            flags=flags,
            signature=signature,
            extensions=extensions,
        )
        if result.signed_bytes() != signed:
            # Cannot happen with the checks above; kept as the definition of
            # "canonical": the bytes we would write are the bytes we read.
            raise ParseError("The announcement is not canonical.", "not-canonical")
        if verify:
            result.verify()
        return result


@attrs.frozen
class Goodbye(_Signed):
    """A host's signed statement that it no longer hosts C{room}.

    C{counter} comes from the same counter as announcements; a goodbye
    removes the room only if its counter is at least the announcement's.
    """

    kind: ClassVar[int] = KIND_GOODBYE
    q: bytes = attrs.field(validator=_validate_key)
    room: str = attrs.field(validator=_validate_room)
    counter: int = attrs.field(validator=_validate_counter)
    signature: bytes = attrs.field(validator=_validate_signature, repr=False)
    extensions: tuple[tuple[int, bytes], ...] = attrs.field(
        default=(), converter=_to_extensions, validator=_validate_extensions
    )
    _signed: bytes = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self._encode_once() > MAX_ANNOUNCEMENT_SIZE:
            raise ParseError(
                f"A goodbye is at most {MAX_ANNOUNCEMENT_SIZE} bytes.", "oversized"
            )

    @property
    def statement(self) -> Goodbye:
        """The host-signed statement this datagram carries: itself."""
        return self

    @classmethod
    def sign(cls, private_key: Ed25519PrivateKey, room: str, counter: int) -> Goodbye:
        """Make and sign a goodbye with the host's private key."""
        unsigned = cls(
            q=raw_public_key(private_key),
            room=room,
            counter=counter,
            signature=bytes(SIGNATURE_SIZE),
        )
        return attrs.evolve(
            unsigned, signature=_sign(private_key, unsigned.signed_bytes())
        )

    def _encode_signed(self) -> bytes:
        fields = [(TLV_ROOM_NAME, self.room.encode("utf-8"))] + list(self.extensions)
        fields.sort(key=lambda f: f[0])
        return (
            _header(KIND_GOODBYE)
            + _GOODBYE_FIXED.pack(self.q, self.counter)
            + b"".join(_tlv(k, v) for k, v in fields)
        )

    @classmethod
    def from_bytes(cls, data: bytes, verify: bool = True) -> Goodbye:
        """Parse and verify a goodbye; L{ParseError} if anything is
        wrong, including the signature (left for L{verify} when
        C{verify} is false)."""
        _check_header(data, KIND_GOODBYE)
        if len(data) > MAX_ANNOUNCEMENT_SIZE:
            raise ParseError(
                f"A goodbye is at most {MAX_ANNOUNCEMENT_SIZE} bytes.", "oversized"
            )
        fixed_end = HEADER_SIZE + _GOODBYE_FIXED.size
        if len(data) < fixed_end + SIGNATURE_SIZE:
            raise ParseError("The goodbye is cut short.", "truncated")
        q, counter = _GOODBYE_FIXED.unpack_from(data, HEADER_SIZE)
        signed, signature = data[:-SIGNATURE_SIZE], data[-SIGNATURE_SIZE:]
        room = None
        extensions = []
        for kind, value in _iter_tlvs(signed[fixed_end:]):
            if kind == TLV_ROOM_NAME:
                if room is not None:
                    raise ParseError("The goodbye names two rooms.", "not-canonical")
                room = _room_from_tlv(value)
            elif kind in KNOWN_FIELD_TYPES:
                raise ParseError(
                    f"Field type {kind} does not belong in a goodbye.",
                    "not-canonical",
                )
            else:
                extensions.append((kind, value))
        if room is None:
            raise ParseError("The goodbye names no room.", "truncated")
        result = cls(
            q=q, room=room, counter=counter, signature=signature, extensions=extensions
        )
        if verify:
            result.verify()
        return result


def _validate_prefix(instance: object, attribute: object, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) > 32:
        raise ParseError("A fingerprint prefix is at most 32 bytes.", "bad-fingerprint")


def _validate_optional_room(
    instance: object, attribute: object, value: str | None
) -> None:
    if value is not None:
        check_room_name(value)


def _validate_padding(instance: object, attribute: object, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= MAX_DATAGRAM_SIZE:
        raise ParseError("Query padding is out of range.", "bad-padding")


@attrs.frozen
class Query:
    """A request: "whoever holds an announcement matching this, answer me".

    C{room} (C{None} for any room) and C{fingerprint_prefix} (leading
    bytes of the SHA-256 of C{Q}; empty for any key) select rooms.
    C{query_id} is random and echoed in answers.  C{padding} is the
    number of zero bytes in the padding field (C{None} for no padding
    field): answers are never larger than three times the query, so a
    querier pads its query to make room for the answers it expects.
    """

    kind: ClassVar[int] = KIND_QUERY
    query_id: bytes = attrs.field(validator=_validate_query_id)
    room: str | None = attrs.field(default=None, validator=_validate_optional_room)
    fingerprint_prefix: bytes = attrs.field(default=b"", validator=_validate_prefix)
    padding: int | None = attrs.field(default=None)
    extensions: tuple[tuple[int, bytes], ...] = attrs.field(
        default=(), converter=_to_extensions, validator=_validate_extensions
    )

    @padding.validator
    def _check_padding(self, attribute: object, value: int | None) -> None:
        if value is not None:
            _validate_padding(self, attribute, value)

    def __attrs_post_init__(self) -> None:
        if len(self.to_bytes()) > MAX_DATAGRAM_SIZE:
            raise ParseError(
                f"A query is at most {MAX_DATAGRAM_SIZE} bytes.", "oversized"
            )

    @property
    def statement(self) -> None:
        """A query carries no signed statement."""
        return None

    def padded_to(self, size: int) -> Query:
        """Return this query with padding so that it is at least C{size}
        bytes long (capped at the datagram limit)."""
        size = min(size, MAX_DATAGRAM_SIZE)
        bare = attrs.evolve(self, padding=None)
        missing = size - len(bare.to_bytes()) - _TLV_HEAD.size
        if missing < 0:
            return bare
        return attrs.evolve(self, padding=missing)

    def matches(self, announcement: Announcement) -> bool:
        """True if C{announcement} is one this query asks for."""
        if self.room is not None and announcement.room != self.room:
            return False
        return (
            hashlib.sha256(announcement.q).digest().startswith(self.fingerprint_prefix)
        )

    def to_bytes(self) -> bytes:
        """The datagram."""
        fields = []
        if self.room is not None:
            fields.append((TLV_ROOM_NAME, self.room.encode("utf-8")))
        if self.fingerprint_prefix:
            fields.append((TLV_FINGERPRINT_PREFIX, self.fingerprint_prefix))
        if self.padding is not None:
            fields.append((TLV_PADDING, bytes(self.padding)))
        fields += list(self.extensions)
        fields.sort(key=lambda f: f[0])
        return (
            _header(KIND_QUERY)
            + self.query_id
            + b"".join(_tlv(k, v) for k, v in fields)
        )

    @classmethod
    def from_bytes(cls, data: bytes, verify: bool = True) -> Query:
        """Parse a query; L{ParseError} if it is malformed.  A query
        is not signed: C{verify} is accepted for a uniform interface."""
        _check_header(data, KIND_QUERY)
        fixed_end = HEADER_SIZE + QUERY_ID_SIZE
        if len(data) < fixed_end:
            raise ParseError("The query is cut short.", "truncated")
        query_id = data[HEADER_SIZE:fixed_end]
        room = None
        prefix = None
        padding = None
        extensions = []
        for kind, value in _iter_tlvs(data[fixed_end:]):
            if kind == TLV_ROOM_NAME:
                if room is not None:
                    raise ParseError("The query names two rooms.", "not-canonical")
                room = _room_from_tlv(value)
            elif kind == TLV_FINGERPRINT_PREFIX:
                if prefix is not None or not 1 <= len(value) <= 32:
                    raise ParseError(
                        "The query's fingerprint field is malformed.",
                        "not-canonical",
                    )
                prefix = value
            elif kind == TLV_PADDING:
                if padding is not None or value.count(0) != len(value):
                    raise ParseError(
                        "The query's padding field is malformed.", "not-canonical"
                    )
                padding = len(value)
            elif kind in KNOWN_FIELD_TYPES:
                raise ParseError(
                    f"Field type {kind} does not belong in a query.",
                    "not-canonical",
                )
            else:
                extensions.append((kind, value))
        return cls(
            query_id=query_id,
            room=room,
            fingerprint_prefix=prefix or b"",
            padding=padding,
            extensions=extensions,
        )


def _validate_remaining(instance: object, attribute: object, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= MAX_LIFETIME:
        raise ParseError(
            f"An answer's remaining lifetime is 0 to {MAX_LIFETIME} seconds.",
            "bad-lifetime",
        )


@attrs.frozen
class Answer:
    """A reply to a query: the host's signed announcement, carried verbatim.

    C{query_id} echoes the query.  C{remaining} is how many seconds the
    answerer would still keep the announcement; receivers keep it for the
    smaller of that and the announcement's own lifetime, so relays cannot
    extend a room's life.  Neither field is signed: they are hints, and the
    worst a forger can do with them is shorten a lifetime.
    """

    kind: ClassVar[int] = KIND_ANSWER
    query_id: bytes = attrs.field(validator=_validate_query_id)
    remaining: int = attrs.field(validator=_validate_remaining)
    announcement: Announcement = attrs.field(
        validator=attrs.validators.instance_of(Announcement)
    )
    extensions: tuple[tuple[int, bytes], ...] = attrs.field(
        default=(), converter=_to_extensions, validator=_validate_extensions
    )

    def __attrs_post_init__(self) -> None:
        if len(self.to_bytes()) > MAX_DATAGRAM_SIZE:
            raise ParseError(
                f"An answer is at most {MAX_DATAGRAM_SIZE} bytes.", "oversized"
            )

    @property
    def statement(self) -> Announcement:
        """The host-signed statement this answer carries: its announcement."""
        return self.announcement

    @property
    def lifetime(self) -> int:
        """Seconds a receiver keeps the announcement this answer carries."""
        return min(self.remaining, self.announcement.lifetime)

    def to_bytes(self) -> bytes:
        """The datagram."""
        inner = self.announcement.to_bytes()
        return (
            _header(KIND_ANSWER)
            + _ANSWER_FIXED.pack(self.query_id, self.remaining, len(inner))
            + inner
            + b"".join(_tlv(k, v) for k, v in self.extensions)
        )

    @classmethod
    def from_bytes(
        cls, data: bytes, verify: bool = True, known: Announcement | None = None
    ) -> Answer:
        """Parse an answer and verify the announcement inside it;
        L{ParseError} if anything is wrong.  With C{verify=False} the
        inner signature is left for C{answer.announcement.verify()}.
        C{known} is an announcement the caller decoded and verified before:
        if the answer carries exactly its bytes, it is used as it is,
        neither parsed nor verified again."""
        _check_header(data, KIND_ANSWER)
        fixed_end = HEADER_SIZE + _ANSWER_FIXED.size
        if len(data) < fixed_end:
            raise ParseError("The answer is cut short.", "truncated")
        query_id, remaining, length = _ANSWER_FIXED.unpack_from(data, HEADER_SIZE)
        if len(data) < fixed_end + length:
            raise ParseError("The answer's announcement is cut short.", "truncated")
        inner = data[fixed_end : fixed_end + length]
        extensions = []
        for kind, value in _iter_tlvs(data[fixed_end + length :]):
            if kind in KNOWN_FIELD_TYPES:
                raise ParseError(
                    f"Field type {kind} does not belong in an answer.",
                    "not-canonical",
                )
            extensions.append((kind, value))
        if remaining > MAX_LIFETIME:
            raise ParseError(
                "The answer's remaining lifetime is too long.", "bad-lifetime"
            )
        if known is None or known.to_bytes() != inner:
            known = Announcement.from_bytes(inner, verify)
        return cls(
            query_id=query_id,
            remaining=remaining,
            announcement=known,
            extensions=extensions,
        )


Datagram = Union[Announcement, Goodbye, Query, Answer]

_BY_KIND: dict[int, type[Announcement] | type[Goodbye] | type[Query] | type[Answer]] = {
    KIND_ANNOUNCEMENT: Announcement,
    KIND_GOODBYE: Goodbye,
    KIND_QUERY: Query,
    KIND_ANSWER: Answer,
}


def parse_datagram(
    data: bytes, verify: bool = True, known: Announcement | Goodbye | None = None
) -> Datagram:
    """Parse any discovery datagram by its kind byte: the one decode entry
    point.  The result's C{kind} says what it is, and its C{statement} is
    the host-signed announcement or goodbye it carries (C{None} for a
    query).

    Signed kinds (and the announcement inside an answer) are verified
    unless C{verify} is false; then the caller decides whether the
    signature is worth checking and calls C{datagram.statement.verify()}.
    C{known} is a statement the caller decoded and verified before (see
    L{read_envelope}): a datagram that is, or carries, exactly its
    bytes reuses it instead of parsing and verifying them again.

    Raises L{ParseError}, and nothing else, for every malformed,
    forged, unknown-version or unknown-kind input.
    """
    _check_header(data, None)
    cls = _BY_KIND.get(data[5])
    if cls is None:
        raise ParseError(
            f"Discovery datagram kind {data[5]} is unknown.", "unknown-kind"
        )
    if known is not None and known.kind == data[5] and known.to_bytes() == data:
        return known
    if cls is Answer:
        inner = known if isinstance(known, Announcement) else None
        return Answer.from_bytes(data, verify, inner)
    return cls.from_bytes(data, verify)


@attrs.frozen
class Envelope:
    """What a datagram claims to be, read without parsing or verifying it.

    C{kind} is its kind byte; C{statement} the raw bytes of the
    host-signed statement it carries (the whole datagram for an
    announcement or goodbye, the embedded announcement for an answer,
    C{None} for a query); C{key} the host key C{Q} that statement names.
    Nothing here is checked beyond framing: it tells a receiver, for the
    cost of a few slices, whose signature a datagram would cost it to
    check, so that a flood can be refused before it is parsed.
    """

    kind: int
    statement: bytes | None
    key: bytes | None


def read_envelope(data: bytes) -> Envelope:
    """Read the L{Envelope} of a datagram.

    Raises L{ParseError} if the header is bad, the kind unknown, or
    a signed statement too short to name its key; L{parse_datagram}
    refuses every such datagram too (sometimes for another reason: it
    checks more).  A datagram that passes may still fail to parse.
    """
    _check_header(data, None)
    kind = data[5]
    if kind not in _BY_KIND:
        raise ParseError(f"Discovery datagram kind {kind} is unknown.", "unknown-kind")
    if kind == KIND_QUERY:
        return Envelope(kind, None, None)
    statement = data
    if kind == KIND_ANSWER:
        fixed_end = HEADER_SIZE + _ANSWER_FIXED.size
        if len(data) < fixed_end:
            raise ParseError("The answer is cut short.", "truncated")
        _, _, length = _ANSWER_FIXED.unpack_from(data, HEADER_SIZE)
        statement = data[fixed_end : fixed_end + length]
    if len(statement) < HEADER_SIZE + KEY_SIZE:
        raise ParseError("The signed statement is cut short.", "truncated")
    return Envelope(kind, statement, statement[HEADER_SIZE : HEADER_SIZE + KEY_SIZE])
