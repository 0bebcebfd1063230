# -*- test-case-name: tests.test_tls -*-
"""TLS settings: the host's server context and clients' pinned contexts.

Both sides are set explicitly rather than left to library defaults:
TLS 1.2 or newer, ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 only
(TLS 1.3's suites are all of that kind), no compression, no renegotiation.
"""

from __future__ import annotations

import hmac

from cryptography import x509
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

from chatroom.identity import HostIdentity, public_key_of

#: TLS 1.2 suites: forward secret (ECDHE) with an AEAD only.  Ed25519
#: certificates are used with the ECDSA suites in TLS 1.2 (RFC 8422).
TLS12_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                 "ECDHE-ECDSA-CHACHA20-POLY1305")
#: TLS 1.3 suites, all AEAD and all forward secret.
TLS13_CIPHERS = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"


def _harden(context: SSL.Context) -> None:
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION |
                        SSL.OP_CIPHER_SERVER_PREFERENCE)
    context.set_cipher_list(TLS12_CIPHERS.encode("ascii"))
    context.set_tls13_ciphersuites(TLS13_CIPHERS.encode("ascii"))


def server_options(identity: HostIdentity) -> ssl.CertificateOptions:
    """The TLS server options for a host: its certificate, hardened.

    The key and certificate are passed as C{cryptography} objects, which
    avoids pyOpenSSL's deprecation of its own X509/PKey types.
    """
    options = ssl.CertificateOptions(
        privateKey=identity.private_key,  # type: ignore[arg-type]
        certificate=identity.certificate,  # type: ignore[arg-type]
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )
    context = options.getContext()
    _harden(context)
    # Let OpenSSL free a connection's read and write buffers while it is
    # idle (32 KiB per connection, measured by bench/tlsmem.py).  Twisted's
    # CertificateOptions sets this today; set here explicitly so the memory
    # per idle member does not depend on a library default.
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    return options


@implementer(IOpenSSLClientConnectionCreator)
class PinnedClientCreator:
    """Client TLS that accepts exactly one room key C{Q}, checked in the
    handshake: a server with another key fails the handshake before a single
    byte of the IRC session is sent.

    @ivar public_key: the 32 raw bytes of the expected Ed25519 key.
    """

    def __init__(self, public_key: bytes) -> None:
        self.public_key = public_key
        self.seen_key: bytes | None = None
        self._context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        _harden(self._context)
        self._context.set_verify(SSL.VERIFY_PEER, self._verify)

    def _verify(self, connection, certificate, errno, depth, ok) -> bool:
        if depth != 0:
            # Chains are not part of our model; the leaf decides.
            return True
        key = public_key_of(certificate.to_cryptography())
        self.seen_key = key
        return key is not None and hmac.compare_digest(key, self.public_key)

    def clientConnectionForTLS(self, tlsProtocol):
        """Make the pinned OpenSSL connection for one TLS client."""
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        connection.set_connect_state()
        return connection


def peer_public_key(transport) -> bytes | None:
    """The room key of the server at the other end of a TLS C{transport}."""
    certificate = transport.getPeerCertificate()
    if certificate is None:
        return None
    if not isinstance(certificate, x509.Certificate):
        certificate = certificate.to_cryptography()
    return public_key_of(certificate)
