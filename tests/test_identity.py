"""Tests for chatroom.identity and chatroom.tls."""

import os
import stat

from cryptography.hazmat.primitives import serialization
from twisted.trial.unittest import SynchronousTestCase

from chatroom.errors import KeyFileError
from chatroom.identity import HostIdentity, colon_hex, load_or_create, public_key_of
from chatroom.tls import server_options


class KeyFileTests(SynchronousTestCase):
    """Creating, loading and refusing host key files."""

    def setUp(self):
        self.dir = self.mktemp()
        os.mkdir(self.dir)
        self.path = os.path.join(self.dir, "host-key.pem")

    def test_created_private(self):
        """A new key file is mode 0600 and loads back to the same key."""
        first = load_or_create(self.path)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        again = load_or_create(self.path)
        self.assertEqual(again.public_key, first.public_key)

    def test_readable_by_others_refused(self):
        load_or_create(self.path)
        os.chmod(self.path, 0o644)
        error = self.assertRaises(KeyFileError, load_or_create, self.path)
        self.assertIn("chmod 600 %s" % (self.path,), str(error))

    def test_not_a_key_refused(self):
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"garbage")
        os.close(fd)
        error = self.assertRaises(KeyFileError, load_or_create, self.path)
        self.assertIn("Ed25519", str(error))

    def test_cannot_create(self):
        """A key file that cannot be created is one sentence with the path."""
        path = os.path.join(self.dir, "missing", "host-key.pem")
        error = self.assertRaises(KeyFileError, load_or_create, path)
        self.assertIn(path, str(error))


class CertificateTests(SynchronousTestCase):
    """The certificate is bound to the key and reproducible."""

    def test_deterministic(self):
        """The same key gives the same certificate bytes, hence the same pins."""
        identity = HostIdentity.generate()
        again = HostIdentity.from_private_key(identity.private_key)
        der = serialization.Encoding.DER
        self.assertEqual(
            identity.certificate.public_bytes(der), again.certificate.public_bytes(der)
        )
        self.assertEqual(identity.certificate_sha256, again.certificate_sha256)

    def test_bound_to_key(self):
        identity = HostIdentity.generate()
        self.assertEqual(public_key_of(identity.certificate), identity.public_key)
        self.assertNotEqual(HostIdentity.generate().spki_sha256, identity.spki_sha256)

    def test_colon_hex(self):
        self.assertEqual(colon_hex(b"\x01\xab"), "01:AB")

    def test_server_options(self):
        """No compression, no renegotiation, set on the context itself."""
        from OpenSSL import SSL

        context = server_options(HostIdentity.generate()).getContext()
        options = context.set_options(0)  # returns the options in force
        self.assertTrue(options & SSL.OP_NO_COMPRESSION)
        self.assertTrue(options & SSL.OP_NO_RENEGOTIATION)
