# -*- test-case-name: tests.test_identity -*-
"""Ed25519 identities: the host's and each client's key file and the certificate bound to it.

The room key C{Q} is the host's Ed25519 public key, and the TLS certificate
is a self-signed Ed25519 certificate for that same key.  The binding is
therefore direct: the certificate's public key I{is} C{Q}, and a client
that knows C{Q} checks the key in the certificate, never a CA or a name.

The certificate is made deterministically from the key (fixed serial, names
and validity; Ed25519 signatures are deterministic), so it is byte-for-byte
the same on every start.  That keeps WeeChat's whole-certificate SHA-256
pin valid across restarts, as well as irssi's public-key pin.

A client has a key of its own made the same way (L{ClientIdentity}): it is
presented as a TLS client certificate, and the host knows the client by it
(ghost takeover, allow-lists), by the same fingerprint rule as room keys.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import stat

from typing import ClassVar, TypeVar

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from chatroom.core.names import fingerprint, short_fingerprint
from chatroom.errors import KeyFileError

#: Key file permission bits that let someone other than the owner in.
_UNSAFE_BITS = stat.S_IRWXG | stat.S_IRWXO

_NOT_BEFORE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)


def colon_hex(digest: bytes) -> str:
    """C{AB:CD:...}, the form irssi's pinning options take."""
    return ":".join("%02X" % (b,) for b in digest)


def make_certificate(
    key: ed25519.Ed25519PrivateKey, role: str = "host"
) -> x509.Certificate:
    """The self-signed certificate for C{key}, identical on every call.

    @param role: C{host} or C{client}, written into the common name
        (C{chatroom host <short fingerprint>}) for people reading it.
    """
    public = key.public_key()
    raw = public.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chatroom"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, "chatroom %s %s" % (role, short_fingerprint(raw))
            ),
        ]
    )
    # A positive serial under 2**63, so every TLS library takes it.
    serial = int.from_bytes(hashlib.sha256(raw).digest()[:8], "big") >> 1
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(serial or 1)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, None)
    )


_Identity = TypeVar("_Identity", bound="Identity")


@attrs.frozen
class Identity:
    """An Ed25519 key with its certificate and pins; see the subclasses.

    @cvar role: C{host} or C{client}: in the certificate's name and in the
        key file errors.
    @ivar private_key: the Ed25519 private key.
    @ivar public_key: the 32 raw bytes of the public key (for a host, C{Q}).
    @ivar certificate: the self-signed TLS certificate bound to it.
    """

    role: ClassVar[str] = "host"

    private_key: ed25519.Ed25519PrivateKey
    public_key: bytes
    certificate: x509.Certificate

    @classmethod
    def from_private_key(
        cls: type[_Identity], key: ed25519.Ed25519PrivateKey
    ) -> _Identity:
        """Derive the public key and the certificate from C{key}."""
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return cls(key, raw, make_certificate(key, cls.role))

    @classmethod
    def generate(cls: type[_Identity]) -> _Identity:
        """A new random identity (tests, and first start)."""
        return cls.from_private_key(ed25519.Ed25519PrivateKey.generate())

    @property
    def fingerprint(self) -> str:
        """The key fingerprint (L{chatroom.core.names.fingerprint})."""
        return fingerprint(self.public_key)

    @property
    def short_fingerprint(self) -> str:
        """The short key fingerprint."""
        return short_fingerprint(self.public_key)

    @property
    def spki_sha256(self) -> bytes:
        """SHA-256 of the DER SubjectPublicKeyInfo (irssi's public-key pin)."""
        return spki_sha256(self.public_key)

    @property
    def certificate_sha256(self) -> bytes:
        """SHA-256 of the DER certificate (WeeChat 3.8's fingerprint pin)."""
        return hashlib.sha256(
            self.certificate.public_bytes(serialization.Encoding.DER)
        ).digest()


def spki_sha256(public_key: bytes) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo of a raw Ed25519 key: what
    irssi's C{-tls_pinned_pubkey} pins, computed from the key alone (the
    certificate carries the same SubjectPublicKeyInfo)."""
    return hashlib.sha256(
        ed25519.Ed25519PublicKey.from_public_bytes(public_key).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).digest()


def public_key_of(certificate: x509.Certificate) -> bytes | None:
    """The raw Ed25519 key in C{certificate}, or C{None} for other keys."""
    key = certificate.public_key()
    if not isinstance(key, ed25519.Ed25519PublicKey):
        return None
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class HostIdentity(Identity):
    """A host key: C{Q}, the room key, with its certificate and pins."""

    role: ClassVar[str] = "host"


class ClientIdentity(Identity):
    """A client's own key, presented as its TLS client certificate."""

    role: ClassVar[str] = "client"


def load_or_create(path: str, kind: type[_Identity] = HostIdentity) -> _Identity:  # type: ignore[assignment]
    """Load the key at C{path}, creating it (mode 0600, C{O_EXCL}) if missing.

    @param kind: L{HostIdentity} (default) or L{ClientIdentity}.
    @raise KeyFileError: the file is readable or writable by others, or is
        not an Ed25519 key, or cannot be read or created.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _load(path, kind)
    except OSError as e:
        raise KeyFileError(
            "Cannot create the %s key file %s: %s." % (kind.role, path, e.strerror)
        ) from None
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    return kind.from_private_key(key)


def _load(path: str, kind: type[_Identity]) -> _Identity:
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if mode & _UNSAFE_BITS:
                raise KeyFileError(
                    "The %s key file %s can be read by other users (mode "
                    "%04o); run 'chmod 600 %s' and start again."
                    % (kind.role, path, stat.S_IMODE(mode), path)
                )
            data = f.read()
    except OSError as e:
        raise KeyFileError(
            "Cannot read the %s key file %s: %s." % (kind.role, path, e.strerror)
        ) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyFileError(
            "The %s key file %s does not hold an unencrypted Ed25519 key; "
            "move it away to have a new key made." % (kind.role, path)
        )
    return kind.from_private_key(key)
