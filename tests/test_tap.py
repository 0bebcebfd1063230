"""Tests for chatroom.tap and the twistd plugin."""

import os
import subprocess
import sys

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from chatroom import tap
from chatroom.service import HostService

#: twistd, run by the Python running the tests.
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class OptionsTests(SynchronousTestCase):
    """Parsing C{twistd chatroom} options."""

    def setUp(self):
        self.data_dir = self.mktemp()

    def parse(self, *args):
        options = tap.Options()
        options.parseOptions(["--data-dir", self.data_dir, *args])
        self.addCleanup(options["store"].close)
        return options

    def test_defaults(self):
        options = self.parse()
        self.assertEqual(options["rooms"], ["lobby"])
        self.assertEqual(options["port"], 6697)
        self.assertEqual(options["listen"], [])
        self.assertEqual(options.limits().flood_rate, 2.0)
        self.assertTrue(os.path.exists(os.path.join(self.data_dir, "host-key.pem")))
        self.assertEqual(os.stat(self.data_dir).st_mode & 0o777, 0o700)

    def test_everything(self):
        options = self.parse("--room", "lobby", "--room", "dev", "--port", "7000",
                             "--interface", "127.0.0.1", "--listen",
                             "tcp:6667:interface=127.0.0.1", "--flood-rate", "0",
                             "--max-clients", "1000", "--history-keep", "50")
        self.assertEqual(options["rooms"], ["lobby", "dev"])
        self.assertEqual((options["port"], options["interface"]), (7000, "127.0.0.1"))
        self.assertEqual(options["listen"], ["tcp:6667:interface=127.0.0.1"])
        limits = options.limits()
        self.assertEqual((limits.flood_rate, limits.max_clients), (0, 1000))
        self.assertEqual(options["history-keep"], 50)

    def test_bad_values(self):
        for args in (["--port", "x"], ["--flood-rate", "-1"], ["--room", "#lobby"],
                     ["--room", "a b"], ["--bogus"], ["--discovery-interface", "eth0"],
                     ["--discovery-interface", "::1"], ["--discovery-group", "10.0.0.1"],
                     ["--ttl", "0"], ["--announce-address", "nowhere"]):
            self.assertRaises(usage.UsageError, tap.Options().parseOptions,
                              ["--data-dir", self.data_dir, *args])

    def test_unusable_data_dir(self):
        """A data directory that is a file gives one sentence."""
        with open(self.data_dir, "w") as f:
            f.write("not a directory")
        error = self.assertRaises(usage.UsageError, tap.Options().parseOptions,
                                  ["--data-dir", self.data_dir])
        self.assertIn(self.data_dir, str(error))

    def test_unsafe_key(self):
        self.parse()
        os.chmod(os.path.join(self.data_dir, "host-key.pem"), 0o640)
        error = self.assertRaises(usage.UsageError, tap.Options().parseOptions,
                                  ["--data-dir", self.data_dir])
        self.assertIn("chmod 600", str(error))

    def test_make_service(self):
        options = self.parse("--port", "0", "--room", "dev")
        self.patch(sys, "stdout", open(os.devnull, "w"))
        self.addCleanup(sys.stdout.close)
        service = tap.makeService(options)
        self.assertIsInstance(service, HostService)
        self.assertEqual(list(service.host.rooms), ["dev"])


class PluginTests(SynchronousTestCase):
    """twistd finds the plugin."""

    def test_found(self):
        makers = [m for m in getPlugins(IServiceMaker) if m.tapname == "chatroom"]
        self.assertEqual(len(makers), 1)
        self.assertIsInstance(makers[0].options(), tap.Options)

    def test_twistd_help(self):
        """C{twistd chatroom --help} documents every option."""
        result = subprocess.run(
            [*TWISTD, "chatroom", "--help"],
            capture_output=True, text=True, cwd=REPO, timeout=120,
            env=dict(os.environ, PYTHONPATH=REPO))
        self.assertEqual(result.returncode, 0, result.stderr)
        for option in ("--room", "--data-dir", "--port", "--interface", "--listen",
                       "--history-keep", "--history-days", "--flood-rate",
                       "--max-clients", "--no-discovery"):
            self.assertIn(option, result.stdout)

    def test_twistd_bad_option(self):
        """A bad option is one line on stderr and a non-zero exit."""
        result = subprocess.run(
            [*TWISTD, "-n", "chatroom",
             "--data-dir", self.mktemp(), "--port", "nope"],
            capture_output=True, text=True, cwd=REPO, timeout=120,
            env=dict(os.environ, PYTHONPATH=REPO))
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("Traceback", result.stdout + result.stderr)
        self.assertIn("--port must be a whole number", result.stdout + result.stderr)


class OpenRoomsOptionsTests(SynchronousTestCase):
    """The --open-rooms options become Limits."""

    def test_open_rooms(self):
        options = tap.Options()
        options.parseOptions(["--data-dir", self.mktemp(), "--open-rooms",
                              "--max-rooms", "7", "--max-opened-per-hour", "2",
                              "--max-room-name-length", "20", "--room-idle-days", "1.5"])
        self.addCleanup(options["store"].close)
        self.assertEqual(options["rooms"], [])
        limits = options.limits()
        self.assertEqual((limits.open_rooms, limits.max_rooms, limits.opened_per_hour,
                          limits.room_name_length, limits.room_idle_seconds),
                         (True, 7, 2, 20, 1.5 * 86400))

    def test_room_name_checked_against_length(self):
        self.assertRaises(usage.UsageError, tap.Options().parseOptions,
                          ["--data-dir", self.mktemp(), "--max-room-name-length", "3",
                           "--room", "lobby"])
