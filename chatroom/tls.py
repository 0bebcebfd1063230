# -*- test-case-name: tests.test_tls -*-
"""TLS settings: the host's server context and clients' pinned contexts.

Both sides are set explicitly rather than left to library defaults:
TLS 1.2 or newer, ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 only
(TLS 1.3's suites are all of that kind), no compression, no renegotiation.

Clients may present a certificate of their own key (a chatroom client
always does; stock IRC clients do not): the host asks for one, never
requires one, and accepts any self-signed one, since a client is known by
the fingerprint of its key (L{client_key}), not by a CA.
"""

from __future__ import annotations

import hmac
from typing import Callable

from cryptography import x509
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

from chatroom.identity import HostIdentity, Identity, public_key_of

#: TLS 1.2 suites: forward secret (ECDHE) with an AEAD only.  Ed25519
#: certificates are used with the ECDSA suites in TLS 1.2 (RFC 8422).
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305"
)
#: TLS 1.3 suites, all AEAD and all forward secret.
TLS13_CIPHERS = (
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
)


def _harden(context: SSL.Context) -> None:
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(
        SSL.OP_NO_COMPRESSION
        | SSL.OP_NO_RENEGOTIATION
        | SSL.OP_CIPHER_SERVER_PREFERENCE
    )
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
    # Ask for a client certificate, do not require one (no
    # VERIFY_FAIL_IF_NO_PEER_CERT), and take any: the certificate only
    # proves the client holds its key; what that key may do is decided by
    # its fingerprint, later.
    context.set_verify(SSL.VERIFY_PEER, _any_client_certificate)
    # Let OpenSSL free a connection's read and write buffers while it is
    # idle (32 KiB per connection, measured by bench/tlsmem.py).  Twisted's
    # CertificateOptions sets this today; set here explicitly so the memory
    # per idle member does not depend on a library default.
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    # No session resumption: keep no session cache (it would hold about
    # 1 KiB per member, bench/tlsmem.py) and issue no TLS 1.2 tickets.
    # Twisted's defaults today; set here so they stay.  TLS 1.3 clients
    # still receive OpenSSL's two tickets (pyOpenSSL cannot turn them off),
    # but the host stores no session, so they never resume.
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    context.set_options(SSL.OP_NO_TICKET)
    return options


def _any_client_certificate(connection, certificate, errno, depth, ok) -> bool:
    return True


def client_key(transport) -> bytes | None:
    """The raw 32-byte Ed25519 public key of the client certificate the
    peer of C{transport} presented, or C{None} (no TLS, no certificate, or
    a key that is not Ed25519).

    Its fingerprint (L{chatroom.core.names.fingerprint}) names the client,
    as a room key's names a host.
    """
    if getattr(transport, "getPeerCertificate", None) is None:
        return None
    return peer_public_key(transport)


@implementer(IOpenSSLClientConnectionCreator)
class PinnedClientCreator:
    """Client TLS that accepts exactly one room key C{Q}, checked in the
    handshake: a server with another key fails the handshake before a single
    byte of the IRC session is sent.

    @ivar public_key: the 32 raw bytes of the expected Ed25519 key, or
        C{None} when C{accept} decides.
    @ivar seen_key: the server's key once the handshake got that far.
    @param identity: the client's own key (a L{chatroom.identity.Identity}),
        presented as its certificate when the host asks; C{None}: none.
    """

    def __init__(
        self,
        public_key: bytes | None,
        accept: Callable[[bytes], bool] | None = None,
        identity: Identity | None = None,
    ) -> None:
        if (public_key is None) == (accept is None):
            raise TypeError("give the expected key or an accept function")
        self.public_key = public_key
        self._accept = accept
        self.seen_key: bytes | None = None
        self._context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        _harden(self._context)
        if identity is not None:
            self._context.use_certificate(identity.certificate)
            self._context.use_privatekey(identity.private_key)  # type: ignore[arg-type]
        self._context.set_verify(SSL.VERIFY_PEER, self._verify)

    def _verify(self, connection, certificate, errno, depth, ok) -> bool:
        if depth != 0:
            # Chains are not part of our model; the leaf decides.
            return True
        key = public_key_of(certificate.to_cryptography())
        self.seen_key = key
        if key is None:
            return False
        if self._accept is not None:
            return self._accept(key)
        assert self.public_key is not None
        return hmac.compare_digest(key, self.public_key)

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
