"""Tests for chatroom.tap and the twistd plugin."""

import os
import signal
import socket
import subprocess
import sys

from twisted.application.service import IServiceMaker
from twisted.internet import reactor
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

    def test_help_has_no_empty_defaults(self):
        """Every default shown by --help says something: an option whose
        default is the empty string would read "[default: ]"."""
        self.assertNotIn("[default: ]", str(tap.Options()))

    def test_refused_command_line_is_not_buried_in_help(self):
        """twistd prints the usage before a parse error: after a refusal it
        is one line pointing at --help, not every option."""
        options = tap.Options()
        error = self.assertRaises(
            usage.UsageError, options.parseOptions, ["--port", "nope"]
        )
        self.assertIn("--port must be a whole number", str(error))
        self.assertEqual(
            options.getUsage(), "twistd chatroom --help lists every option.\n"
        )
        self.assertIn("--oper-file", tap.Options().getUsage())

    def parse(self, *args):
        options = tap.Options()
        options.parseOptions(["--data-dir", self.data_dir, *args])
        return options

    def build(self, options):
        """The service, as makeService builds it (without the printing)."""
        service = tap.build_service(reactor, options)
        self.addCleanup(service.store.close)
        return service

    def test_defaults(self):
        options = self.parse()
        self.assertEqual(options["rooms"], ["lobby"])
        self.assertEqual(options["port"], 6697)
        self.assertEqual(options["listen"], [])
        self.assertEqual(options.limits().flood_rate, 2.0)
        self.assertEqual(
            (options["max-handshakes"], options["max-handshakes-per-address"]), (64, 3)
        )

    def test_parsing_touches_nothing(self):
        """Parsing only parses: the data directory is made by makeService."""
        self.parse()
        self.assertFalse(os.path.exists(self.data_dir))
        self.build(self.parse())
        self.assertTrue(os.path.exists(os.path.join(self.data_dir, "host-key.pem")))
        self.assertEqual(os.stat(self.data_dir).st_mode & 0o777, 0o700)

    def test_everything(self):
        options = self.parse(
            "--room",
            "lobby",
            "--room",
            "dev",
            "--port",
            "7000",
            "--interface",
            "127.0.0.1",
            "--listen",
            "tcp:6667:interface=127.0.0.1",
            "--flood-rate",
            "0",
            "--max-clients",
            "1000",
            "--history-keep",
            "50",
        )
        self.assertEqual(options["rooms"], ["lobby", "dev"])
        self.assertEqual((options["port"], options["interface"]), (7000, "127.0.0.1"))
        self.assertEqual(options["listen"], ["tcp:6667:interface=127.0.0.1"])
        limits = options.limits()
        self.assertEqual((limits.flood_rate, limits.max_clients), (0, 1000))
        self.assertEqual(options["history-keep"], 50)

    def test_bad_values(self):
        for args in (
            ["--port", "x"],
            ["--flood-rate", "-1"],
            ["--room", "#lobby"],
            ["--room", "a b"],
            ["--bogus"],
            ["--discovery-interface", "eth0"],
            ["--discovery-interface", "::1"],
            ["--discovery-group", "10.0.0.1"],
            ["--ttl", "0"],
            ["--announce-address", "nowhere"],
            ["--max-handshakes", "0"],
            ["--max-handshakes-per-address", "x"],
        ):
            self.assertRaises(
                usage.UsageError,
                tap.Options().parseOptions,
                ["--data-dir", self.data_dir, *args],
            )

    def test_fanout_options(self):
        """Fan-out is off by default; on, it goes out of 127.0.0.1 unless
        told otherwise, and bad addresses are refused."""
        self.assertIsNone(self.parse().fanout())
        settings = self.parse("--fanout").fanout()
        self.assertEqual(
            (settings.interface, settings.group, settings.port, settings.ttl),
            ("127.0.0.1", "239.255.67.70", 47668, 8),
        )
        settings = self.parse(
            "--fanout",
            "--fanout-interface",
            "10.1.2.3",
            "--fanout-group",
            "239.1.2.3",
            "--fanout-ttl",
            "2",
        ).fanout()
        self.assertEqual(
            (settings.interface, settings.group, settings.ttl),
            ("10.1.2.3", "239.1.2.3", 2),
        )
        for args in (
            ["--fanout-interface", "eth0"],
            ["--fanout-interface", "::1"],
            ["--fanout-interface", "239.1.1.1"],
            ["--fanout-group", "10.0.0.1"],
            ["--fanout-ttl", "0"],
            ["--fanout-port", "70000"],
        ):
            self.assertRaises(
                usage.UsageError,
                tap.Options().parseOptions,
                ["--data-dir", self.data_dir, "--fanout", *args],
            )

    def make_service_exit(self, *args):
        """makeService's SystemExit message for C{args}."""
        options = self.parse(*args)
        error = self.assertRaises(SystemExit, tap.makeService, options)
        return str(error)

    def test_unusable_data_dir(self):
        """A data directory that is a file gives one sentence."""
        with open(self.data_dir, "w") as f:
            f.write("not a directory")
        message = self.make_service_exit()
        self.assertIn(self.data_dir, message)
        self.assertTrue(message.startswith("chatroom: "), message)

    def test_unsafe_key(self):
        self.build(self.parse())
        os.chmod(os.path.join(self.data_dir, "host-key.pem"), 0o640)
        self.assertIn("chmod 600", self.make_service_exit())

    def test_unreadable_motd(self):
        message = self.make_service_exit("--motd-file", self.mktemp())
        self.assertIn("Cannot read the MOTD file", message)
        self.assertFalse(os.path.exists(self.data_dir))

    def test_unusable_listener_closes_store(self):
        """A bad --listen is one sentence, and the store opened before it is
        closed again (no SQLite handle left behind)."""
        closed = []
        real = tap.open_data_dir

        def tracking(path):
            identity, store = real(path)
            close = store.close
            store.close = lambda: (closed.append(True), close())
            return identity, store

        self.patch(tap, "open_data_dir", tracking)
        message = self.make_service_exit("--listen", "bogus:1")
        self.assertIn("bogus:1", message)
        self.assertEqual(closed, [True])

    def test_listen_certificate_not_a_key(self):
        """A certificate file that holds no key is one sentence."""
        pem = os.path.abspath(self.mktemp())
        with open(pem, "w") as f:
            f.write("not a key\n")
        message = self.make_service_exit("--listen", "ssl:0:privateKey=" + pem)
        self.assertIn("cannot be used", message)

    def test_tls_endpoint_with_certificate(self):
        """The main TLS port always serves the host's certificate."""
        from cryptography.hazmat.primitives import serialization

        from chatroom.identity import HostIdentity

        identity = HostIdentity.generate()
        pem = os.path.abspath(self.mktemp())
        with open(pem, "wb") as f:
            f.write(
                identity.private_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            f.write(identity.certificate.public_bytes(serialization.Encoding.PEM))
        message = self.make_service_exit(
            "--tls-endpoint", "ssl:0:interface=127.0.0.1:privateKey=" + pem
        )
        self.assertIn("names its own certificate", message)

    def test_tls_endpoint(self):
        """--tls-endpoint replaces --port: one TLS listener, on it."""
        from chatroom.service import HostTLSServerEndpoint

        service = self.build(self.parse("--tls-endpoint", "tcp:0:interface=127.0.0.1"))
        (listener,) = service.listeners
        self.assertIsInstance(listener.endpoint, HostTLSServerEndpoint)
        self.assertEqual(listener.description, "tcp:0:interface=127.0.0.1")

    def test_make_service(self):
        options = self.parse("--port", "0", "--room", "dev", "--max-handshakes", "9")
        # makeService handles SIGHUP: give this process its handler back.
        self.addCleanup(signal.signal, signal.SIGHUP, signal.getsignal(signal.SIGHUP))
        self.patch(sys, "stdout", open(os.devnull, "w"))
        self.addCleanup(sys.stdout.close)
        service = tap.makeService(options)
        self.addCleanup(service.store.close)
        self.assertIsInstance(service, HostService)
        self.assertEqual(list(service.host.rooms), ["dev"])
        self.assertEqual(service.factory.limits.in_progress, 9)


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
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
            env=dict(os.environ, PYTHONPATH=REPO),
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        for option in (
            "--room",
            "--data-dir",
            "--port",
            "--interface",
            "--listen",
            "--history-keep",
            "--history-days",
            "--flood-rate",
            "--max-clients",
            "--no-discovery",
            "--max-handshakes",
            "--max-handshakes-per-address",
            "--tls-endpoint",
        ):
            self.assertIn(option, result.stdout)

    def test_twistd_bad_option(self):
        """A bad option is one line on stderr and a non-zero exit."""
        result = subprocess.run(
            [*TWISTD, "-n", "chatroom", "--data-dir", self.mktemp(), "--port", "nope"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
            env=dict(os.environ, PYTHONPATH=REPO),
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("Traceback", result.stdout + result.stderr)
        self.assertIn("--port must be a whole number", result.stdout + result.stderr)


class OpenRoomsOptionsTests(SynchronousTestCase):
    """The --open-rooms options become Limits."""

    def test_open_rooms(self):
        options = tap.Options()
        options.parseOptions(
            [
                "--data-dir",
                self.mktemp(),
                "--open-rooms",
                "--max-rooms",
                "7",
                "--max-opened-per-hour",
                "2",
                "--max-room-name-length",
                "20",
                "--room-idle-days",
                "1.5",
            ]
        )
        self.assertEqual(options["rooms"], [])
        limits = options.limits()
        self.assertEqual(
            (
                limits.open_rooms,
                limits.max_rooms,
                limits.opened_per_hour,
                limits.room_name_length,
                limits.room_idle_seconds,
            ),
            (True, 7, 2, 20, 1.5 * 86400),
        )

    def test_room_name_checked_against_length(self):
        self.assertRaises(
            usage.UsageError,
            tap.Options().parseOptions,
            [
                "--data-dir",
                self.mktemp(),
                "--max-room-name-length",
                "3",
                "--room",
                "lobby",
            ],
        )


def _twistd(test, *args, env=None):
    """Run C{twistd -n chatroom ARGS} to its end; the finished process."""
    return subprocess.run(
        [
            *TWISTD,
            "-n",
            "--pidfile=",
            "chatroom",
            "--data-dir",
            os.path.abspath(test.mktemp()),
            "--port",
            "0",
            "--interface",
            "127.0.0.1",
            "--no-discovery",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env=dict(env or os.environ, PYTHONPATH=REPO),
    )


class StartupErrorTests(SynchronousTestCase):
    """A real twistd that cannot start says why in one sentence."""

    def assertOneSentence(self, result, *expected):
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0, output)
        self.assertNotIn("Traceback", output)
        # Before logging starts the sentence is all of stderr; once twistd
        # logs, it is one line of the log.
        lines = [line for line in output.splitlines() if "chatroom: " in line]
        self.assertEqual(len(lines), 1, output)
        self.assertTrue(lines[0].rstrip().endswith("."), output)
        for text in expected:
            self.assertIn(text, lines[0])

    def test_unusable_descriptions(self):
        for description, expected in [
            ("bogus:1", "Unknown endpoint type"),
            ("tcp:notaport", "not a usable listener description"),
            ("tcp:1:colour=blue", "not a usable listener description"),
            ("ssl:0:privateKey=/nonexistent/key.pem", "/nonexistent/key.pem"),
            ("systemd:domain=INET:index=0", "LISTEN_FDS"),
        ]:
            self.assertOneSentence(
                _twistd(self, "--listen", description), description, expected
            )

    def test_tls_endpoint_unusable(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
        self.assertOneSentence(
            _twistd(self, "--tls-endpoint", "systemd:domain=INET:index=0", env=env),
            "LISTEN_FDS",
        )

    def test_port_in_use(self):
        """A port another socket holds is one sentence at start."""
        holder = socket.socket()
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        self.assertOneSentence(
            _twistd(self, "--listen", "tcp:%d:interface=127.0.0.1" % (port,)),
            "cannot listen on 127.0.0.1 port %d" % (port,),
        )


class SSLListenerTests(SynchronousTestCase):
    """C{--listen ssl:PORT} without a certificate serves the host's own."""

    def test_ssl_listener_uses_host_key(self):
        from chatroom.identity import load_or_create
        from chatroom.service import data_paths

        from .blocking_client import BlockingClient
        from .test_crash import HostProcess

        data_dir = os.path.abspath(self.mktemp())
        os.makedirs(data_dir)
        identity = load_or_create(data_paths(data_dir)[0])
        host = HostProcess(
            data_dir,
            os.path.join(data_dir, "host.log"),
            args=["--listen", "ssl:0:interface=127.0.0.1"],
        )
        self.addCleanup(host.stop)
        main_port, ssl_port = host.port(count=2)
        # The client checks that the certificate holds the host key Q.
        client = BlockingClient(ssl_port, identity.public_key, "alice")
        client.send("JOIN", "#lobby")
        client.wait_for(lambda m: m.command == "366")
        client.close()
        with open(host.log_path) as f:
            self.assertNotIn("Traceback", f.read())


class NumberLimitTests(SynchronousTestCase):
    """Numeric options refuse what the host cannot use, in one sentence."""

    def refusal(self, *args):
        error = self.assertRaises(
            usage.UsageError,
            tap.Options().parseOptions,
            ["--data-dir", self.mktemp(), *args],
        )
        return str(error)

    def test_every_float_option_refuses_non_finite(self):
        """inf and 1e400 (read as infinity) are refused like nan and -1,
        for every option whose value is a float: the upkeep turns days
        into whole milliseconds, which infinity is not."""
        floats = [
            o[0]
            for o in tap.Options.optParameters
            if len(o) > 4
            and "number" in o[4].coerceDoc
            and "whole" not in o[4].coerceDoc
        ]
        self.assertEqual(
            sorted(floats), ["flood-rate", "history-days", "room-idle-days"]
        )
        for name in floats:
            for value in ("inf", "1e400", "-inf", "nan", "-1"):
                message = self.refusal("--" + name, value)
                self.assertIn("--%s must be a finite number" % (name,), message)

    def test_days_have_an_upper_bound(self):
        """A finite but huge number of days would not fit SQLite's 64-bit
        integers once made milliseconds; a million days is the most."""
        for name in ("--history-days", "--room-idle-days"):
            self.assertIn(
                "%s must be a finite number from 0 to 1000000" % (name,),
                self.refusal(name, "1e300"),
            )
            options = tap.Options()
            options.parseOptions(["--data-dir", self.mktemp(), name, "1000000"])
            self.assertEqual(options[name[2:]], 1000000.0)

    def test_room_name_length_from_1_to_64(self):
        """0 would refuse every name ("use up to 0 letters"); past 64 a
        room could not be announced."""
        from chatroom.core.discovery import MAX_ROOM_NAME_BYTES

        self.assertEqual(tap.MAX_ROOM_NAME_LENGTH, MAX_ROOM_NAME_BYTES)
        for value in ("0", "-1", "65"):
            self.assertIn(
                "--max-room-name-length must be a whole number from 1 to 64",
                self.refusal("--max-room-name-length", value),
            )
        options = tap.Options()
        options.parseOptions(
            ["--data-dir", self.mktemp(), "--max-room-name-length", "64"]
        )
        self.assertEqual(options.limits().room_name_length, 64)

    def test_huge_whole_number(self):
        """A whole number too big for a float is no traceback."""
        options = tap.Options()
        options.parseOptions(["--data-dir", self.mktemp(), "--history-keep", "9" * 400])
        self.assertEqual(options["history-keep"], int("9" * 400))


class OpenRoomsDefaultRoomTests(SynchronousTestCase):
    """--open-rooms without --room hosts no fixed room, and says so."""

    def parse(self, *args):
        options = tap.Options()
        options.parseOptions(
            ["--data-dir", self.mktemp(), "--port", "0", "--no-discovery", *args]
        )
        return options

    def test_help_says_so(self):
        """--help tells the operator that --open-rooms drops the lobby."""
        # twistd wraps the help, at spaces and after hyphens.
        text = " ".join(str(tap.Options()).split()).replace("- ", "-")
        self.assertIn("[default: lobby; none with --open-rooms]", text)
        self.assertIn("With no --room, the host then has no fixed room", text)

    def test_rooms(self):
        self.assertEqual(self.parse()["rooms"], ["lobby"])
        self.assertEqual(self.parse("--open-rooms")["rooms"], [])
        self.assertEqual(
            self.parse("--open-rooms", "--room", "lobby")["rooms"], ["lobby"]
        )

    def start_output(self, *args):
        import io

        out = io.StringIO()
        self.patch(sys, "stdout", out)
        service = tap.makeService(self.parse(*args))
        self.addCleanup(service.store.close)
        return out.getvalue()

    def test_start_output(self):
        """At start, the printed summary says users open the rooms, and
        that there is no fixed one."""
        output = self.start_output("--open-rooms")
        self.assertNotIn("hosting #", output)
        self.assertIn("users may open rooms (JOIN #NAME); no fixed room\n", output)
        output = self.start_output("--open-rooms", "--room", "dev")
        self.assertIn("hosting #dev", output)
        self.assertIn("users may open rooms (JOIN #NAME)\n", output)
        self.assertNotIn("users may open", self.start_output())
