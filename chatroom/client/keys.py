# -*- test-case-name: tests.test_client_keys -*-
"""Keys on the client side: what C{--key} accepts, and the client's own key.

Names, used the same way everywhere (host banner, C{chatroom find},
C{rooms --json}, errors, docs):

- B{public key}: the host's Ed25519 public key C{Q}, 32 bytes, written as 64
  hex digits (C{public_key} in JSON);
- B{key fingerprint}: the hex SHA-256 of those 32 bytes, 64 hex digits
  (C{fingerprint}; L{chatroom.core.names.fingerprint}); the host prints it
  at start as C{chatroom host key fingerprint ...};
- B{short fingerprint}: its first 16 hex digits, what C{FINGERPRINT/ROOM}
  and the tables show (C{short_fingerprint}).

C{--key} takes any of the three (L{KeyPin}).
"""

from __future__ import annotations

import hmac
import string

import attrs

from chatroom.client import errors
from chatroom.core.names import SHORT_FINGERPRINT_HEX, fingerprint

_HEX = frozenset(string.hexdigits)


@attrs.frozen
class KeyPin:
    """What C{--key} named: a public key, a key fingerprint, or a short one.

    A 64-digit value is either the public key or the key fingerprint; a key
    matches when it is the one or has the other.  Both cannot happen for
    two different keys unless SHA-256 has a preimage, so accepting either
    gives away nothing (docs/decisions.rst, "--key").

    @ivar hex: the lowercase hex digits the user gave (16 or 64).
    """

    hex: str

    @classmethod
    def parse(cls, text: str) -> KeyPin:
        """Read C{--key}: 64 or 16 hex digits; colons and spaces are ignored.

        @raise errors.BadRoomSpec: with a sentence saying what it takes.
        """
        cleaned = text.replace(":", "").replace(" ", "").lower()
        if not cleaned or not set(cleaned) <= _HEX or \
                len(cleaned) not in (64, SHORT_FINGERPRINT_HEX):
            raise errors.BadRoomSpec(
                "--key takes the host's key fingerprint (64 hex digits, as the"
                " host prints it at start, or the short form of 16), or its"
                " public key (64 hex digits); 'chatroom find ROOM' prints"
                " them; %r is none of these." % (text,))
        return cls(cleaned)

    @property
    def exact_key(self) -> bytes | None:
        """The public key, if the 64 digits are one (they may instead be a
        fingerprint: only a server's key tells)."""
        return bytes.fromhex(self.hex) if len(self.hex) == 64 else None

    def matches(self, public_key: bytes) -> bool:
        """Whether C{public_key} (32 raw bytes) is the key named."""
        digest = fingerprint(public_key)
        if len(self.hex) == 64:
            return hmac.compare_digest(public_key.hex(), self.hex) or \
                hmac.compare_digest(digest, self.hex)
        return hmac.compare_digest(digest[:SHORT_FINGERPRINT_HEX], self.hex)

    def describe(self) -> str:
        """The pin for an error message: the short form of what was typed."""
        return self.hex[:SHORT_FINGERPRINT_HEX] + ("..." if len(self.hex) > 16
                                                   else "")
