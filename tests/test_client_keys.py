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
        for text in (self.identity.public_key.hex(), self.identity.fingerprint,
                     self.identity.short_fingerprint,
                     self.identity.fingerprint.upper(),
                     ":".join(self.identity.short_fingerprint[i:i + 2]
                              for i in range(0, 16, 2))):
            pin = KeyPin.parse(text)
            self.assertTrue(pin.matches(self.identity.public_key), text)
            self.assertFalse(pin.matches(self.other.public_key), text)

    def test_exact_key_only_for_64_digits(self):
        self.assertEqual(KeyPin.parse(self.identity.public_key.hex()).exact_key,
                         self.identity.public_key)
        self.assertIsNone(KeyPin.parse(self.identity.short_fingerprint).exact_key)

    def test_malformed(self):
        for text in ("", "abc", "g" * 64, self.identity.fingerprint[:20],
                     self.identity.fingerprint + "00"):
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
        self.assertEqual(first, "chatroom host key fingerprint %s"
                         % (identity.fingerprint,))
