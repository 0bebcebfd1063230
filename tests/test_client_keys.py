"""Key names and forms: what --key accepts, and what the host banner prints."""

import io
import os
import sys

from twisted.trial.unittest import SynchronousTestCase

from chatroom.client import errors
from chatroom.client.keys import KeyPin
from chatroom.identity import HostIdentity


class KeyPinTests(SynchronousTestCase):
    def setUp(self):
        self.identity = HostIdentity.generate()
        self.other = HostIdentity.generate()

    def test_three_forms_match(self):
        for text in (
            self.identity.public_key.hex(),
            self.identity.fingerprint,
            self.identity.short_fingerprint,
            self.identity.fingerprint.upper(),
            ":".join(
                self.identity.short_fingerprint[i : i + 2] for i in range(0, 16, 2)
            ),
        ):
            pin = KeyPin.parse(text)
            self.assertTrue(pin.matches(self.identity.public_key), text)
            self.assertFalse(pin.matches(self.other.public_key), text)

    def test_exact_key_only_for_64_digits(self):
        self.assertEqual(
            KeyPin.parse(self.identity.public_key.hex()).exact_key,
            self.identity.public_key,
        )
        self.assertIsNone(KeyPin.parse(self.identity.short_fingerprint).exact_key)

    def test_malformed(self):
        for text in (
            "",
            "abc",
            "g" * 64,
            self.identity.fingerprint[:20],
            self.identity.fingerprint + "00",
        ):
            error = self.assertRaises(errors.BadRoomSpec, KeyPin.parse, text)
            self.assertIn("--key takes", str(error))


class BannerTests(SynchronousTestCase):
    """The host prints its key fingerprint under that name."""

    def test_banner_says_key_fingerprint(self):
        from chatroom import tap
        from chatroom.identity import load_or_create

        data_dir = self.mktemp()
        options = tap.Options()
        options.parseOptions(["--data-dir", data_dir, "--port", "0"])
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        tap.makeService(options)
        identity = load_or_create(os.path.join(data_dir, "host-key.pem"))
        first = out.getvalue().splitlines()[0]
        self.assertEqual(
            first, "chatroom host key fingerprint %s" % (identity.fingerprint,)
        )


class ClientKeyFileTests(SynchronousTestCase):
    """Issue 12 item 3: the client's own key, made like the host's."""

    def setUp(self):
        self.data_dir = os.path.join(self.mktemp(), "chatroom")

    def test_made_on_first_use_private(self):
        import stat

        from chatroom.client.keys import client_key_path, load_client_identity
        from chatroom.identity import ClientIdentity

        first = load_client_identity(self.data_dir)
        self.assertIsInstance(first, ClientIdentity)
        path = client_key_path(self.data_dir)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.data_dir).st_mode) & 0o077, 0)
        self.assertEqual(
            load_client_identity(self.data_dir).public_key, first.public_key
        )

    def test_readable_by_others_refused(self):
        from chatroom.client.keys import client_key_path, load_client_identity
        from chatroom.errors import KeyFileError

        load_client_identity(self.data_dir)
        os.chmod(client_key_path(self.data_dir), 0o640)
        error = self.assertRaises(KeyFileError, load_client_identity, self.data_dir)
        self.assertIn("The client key file", str(error))
        self.assertIn("chmod 600", str(error))

    def test_certificate_names_the_client_and_is_deterministic(self):
        from cryptography.hazmat.primitives import serialization

        from chatroom.identity import ClientIdentity, public_key_of

        identity = ClientIdentity.generate()
        again = ClientIdentity.from_private_key(identity.private_key)
        der = serialization.Encoding.DER
        self.assertEqual(
            identity.certificate.public_bytes(der), again.certificate.public_bytes(der)
        )
        self.assertEqual(public_key_of(identity.certificate), identity.public_key)
        self.assertIn(
            "chatroom client " + identity.short_fingerprint,
            identity.certificate.subject.rfc4514_string(),
        )

    def test_whoami(self):
        from twisted.internet.task import Clock

        from chatroom.client.keys import load_client_identity
        from chatroom.client.main import run

        out = io.StringIO()
        self.successResultOf(
            run(Clock(), ["whoami", "--data-dir", self.data_dir], out, io.StringIO())
        )
        identity = load_client_identity(self.data_dir)
        self.assertEqual(
            out.getvalue().splitlines()[0],
            "client key fingerprint %s" % (identity.fingerprint,),
        )
