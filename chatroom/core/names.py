# -*- test-case-name: tests.test_names -*-
"""Names and identifiers shared by the host, discovery and the client.

One rule for each: how nicks and room names fold, which room names a host
may open, how a C{msgid} carries a room's sequence number, and how a key is
fingerprinted.  Pure functions; nothing here touches the network.
"""

from __future__ import annotations

import hashlib

#: Hex digits of the short fingerprint people read and type.
SHORT_FINGERPRINT_HEX = 16

#: Characters a room name may use: a conservative subset of the channel
#: names RFC 2812 allows, safe in every client, file name and log line.
ROOM_NAME_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
)


def casefold(name: str) -> str:
    """Fold a nick or room name as the advertised C{CASEMAPPING=ascii} does."""
    return name.lower() if name.isascii() else _ascii_lower(name)


def _ascii_lower(name: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in name)


def valid_room_name(name: str, max_length: int) -> bool:
    """Whether C{name} (without C{#}) may name a room on a host.

    @param max_length: the longest name allowed, in characters (the host's
        C{--room-name-length}; C{CHANNELLEN} in ISUPPORT is one more).
    """
    return 0 < len(name) <= max_length and set(name) <= ROOM_NAME_CHARACTERS


def make_msgid(room_key: str, seq: int) -> str:
    """The IRCv3 C{msgid} of event C{seq} in the room C{room_key}."""
    return "%s:%d" % (room_key, seq)


def parse_msgid(msgid: str) -> tuple[str, int] | None:
    """Split a C{msgid} into room key and sequence number, or C{None}.

    Only ASCII decimal digits count as a number, so C{"lobby:\u0661"} is
    not a msgid of ours.
    """
    room, sep, seq = msgid.rpartition(":")
    if not sep or not seq.isascii() or not seq.isdigit():
        return None
    return room, int(seq)


def fingerprint(public_key: bytes) -> str:
    """The full fingerprint of a raw 32-byte Ed25519 key: hex SHA-256 of
    its raw bytes (64 lowercase hex digits)."""
    return hashlib.sha256(public_key).hexdigest()


def short_fingerprint(public_key: bytes) -> str:
    """The short form people compare and type: the first 16 hex digits of
    L{fingerprint}."""
    return fingerprint(public_key)[:SHORT_FINGERPRINT_HEX]
