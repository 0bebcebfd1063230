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

The client's own key (L{load_client_identity}) is an Ed25519 key made on
first use in the user's data directory, as the host's is: created 0600 with
C{O_EXCL}, refused when others can read it (the same code,
L{chatroom.identity.load_or_create}).  It is presented as a TLS client
certificate; C{chatroom whoami} prints its key fingerprint.
"""

from __future__ import annotations

import hmac
import os
import string

import attrs

from chatroom.client import errors
from chatroom.core.names import SHORT_FINGERPRINT_HEX, fingerprint
from chatroom.errors import DataDirectoryError
from chatroom.identity import ClientIdentity, load_or_create

#: The client's key file, in the data directory.
CLIENT_KEY_FILE = "client-key.pem"


def default_data_dir() -> str:
    """C{$XDG_DATA_HOME/chatroom}, or C{~/.local/share/chatroom}: the
    host's default too (C{twistd chatroom --data-dir})."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(base, "chatroom")


def client_key_path(data_dir: str | None = None) -> str:
    """Where the client key lives."""
    return os.path.join(data_dir or default_data_dir(), CLIENT_KEY_FILE)


def load_client_identity(data_dir: str | None = None) -> ClientIdentity:
    """The client's key, made on first use (the directory 0700, the file
    0600).

    @raise chatroom.errors.KeyFileError: the key file is readable by
        others, is not an Ed25519 key, or cannot be made.
    @raise chatroom.errors.DataDirectoryError: the directory cannot be made.
    """
    path = client_key_path(data_dir)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    except OSError as e:
        raise DataDirectoryError(
            "Cannot create the data directory %s for the client key: %s; give"
            " another one with --data-dir." % (os.path.dirname(path), e.strerror)
        ) from None
    return load_or_create(path, ClientIdentity)


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
        if (
            not cleaned
            or not set(cleaned) <= _HEX
            or len(cleaned) not in (64, SHORT_FINGERPRINT_HEX)
        ):
            raise errors.BadRoomSpec(
                "--key takes the host's key fingerprint (64 hex digits, as the"
                " host prints it at start, or the short form of 16), or its"
                " public key (64 hex digits); 'chatroom find ROOM' prints"
                " them; %r is none of these." % (text,)
            )
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
            return hmac.compare_digest(
                public_key.hex(), self.hex
            ) or hmac.compare_digest(digest, self.hex)
        return hmac.compare_digest(digest[:SHORT_FINGERPRINT_HEX], self.hex)

    def describe(self) -> str:
        """The pin for an error message: the short form of what was typed."""
        return self.hex[:SHORT_FINGERPRINT_HEX] + ("..." if len(self.hex) > 16 else "")
