"""SIGHUP: the host reads its allow-list and operator files again, and a
host with nothing to reload says so and goes on (it is never killed)."""

import os
import re
import signal
import sys
import time

from twisted.internet import reactor
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from chatroom import tap

from .test_crash import HostProcess

#: A client key fingerprint as the allow-list holds it (hex SHA-256).
FINGERPRINT = "ab" * 32


class ReloadOnHangupTests(SynchronousTestCase):
    """L{tap.reload_on_hangup}, called as the SIGHUP handler calls it."""

    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.events = []
        self.patch(tap, "_log", Logger(observer=self.events.append))

    def write(self, name, text, mode=0o600):
        path = os.path.join(self.directory, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def build(self, *args):
        options = tap.Options()
        options.parseOptions(
            ["--data-dir", os.path.join(self.directory, "data"), "--no-discovery"]
            + ["--port", "0", "--interface", "127.0.0.1", *args]
        )
        service = tap.build_service(reactor, options)
        self.addCleanup(service.store.close)
        return service

    def messages(self):
        return [e["log_format"].format(**e) for e in self.events]

    def test_nothing_to_reload(self):
        """Neither private rooms nor --oper-file: one line says so."""
        service = self.build()
        tap.reload_on_hangup(service, None)
        (message,) = self.messages()
        self.assertIn("nothing to reload", message)
        self.assertEqual(service.host.operators, {})

    def test_operators_read_again(self):
        """--oper-file is read again: the next OPER checks the new list."""
        path = self.write("opers", "alice one\n")
        service = self.build("--oper-file", path)
        self.assertEqual(service.host.operators, {"alice": "one"})
        self.write("opers", "# rotated\nalice two\nbob three\n")
        tap.reload_on_hangup(service, path)
        self.assertEqual(service.host.operators, {"alice": "two", "bob": "three"})
        (message,) = self.messages()
        self.assertIn("2 server operator(s)", message)

    def test_bad_operator_file_keeps_the_old_operators(self):
        """A malformed, unreadable or world-readable file is one logged
        sentence; the operators stay as they were."""
        path = self.write("opers", "alice one\n")
        service = self.build("--oper-file", path)
        for text, mode, said in (
            ("alice\n", 0o600, "line 1"),
            ("alice two\n", 0o644, "chmod 600"),
        ):
            self.events.clear()
            self.write("opers", text, mode)
            tap.reload_on_hangup(service, path)
            self.assertEqual(service.host.operators, {"alice": "one"})
            (message,) = self.messages()
            self.assertIn("the operators are unchanged", message)
            self.assertIn(said, message)
        self.events.clear()
        os.remove(path)
        tap.reload_on_hangup(service, path)
        self.assertEqual(service.host.operators, {"alice": "one"})
        (message,) = self.messages()
        self.assertIn("Cannot read the operator file", message)

    def test_allow_list_and_operators(self):
        """A private host with --oper-file reads both again."""
        allow = self.write("allow", "")
        opers = self.write("opers", "alice one\n")
        service = self.build("--private", "--allow-file", allow, "--oper-file", opers)
        room = service.host.rooms["lobby"]
        self.assertEqual(room.access.allowed, frozenset())
        self.write("allow", FINGERPRINT + "\n")
        self.write("opers", "bob two\n")
        tap.reload_on_hangup(service, opers)
        self.assertEqual(room.access.allowed, {FINGERPRINT})
        self.assertEqual(service.host.operators, {"bob": "two"})
        self.assertNotIn("nothing to reload", " ".join(self.messages()))

    def test_make_service_always_handles_sighup(self):
        """Without --private, makeService still installs the handler, and
        the handler (through the reactor) reloads."""
        self.addCleanup(signal.signal, signal.SIGHUP, signal.getsignal(signal.SIGHUP))
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        path = self.write("opers", "alice one\n")
        options = tap.Options()
        options.parseOptions(
            ["--data-dir", os.path.join(self.directory, "data"), "--no-discovery"]
            + ["--port", "0", "--interface", "127.0.0.1", "--oper-file", path]
        )
        self.patch(sys, "stdout", open(os.devnull, "w"))
        self.addCleanup(sys.stdout.close)
        service = tap.makeService(options)
        self.addCleanup(service.store.close)
        handler = signal.getsignal(signal.SIGHUP)
        self.assertTrue(callable(handler), handler)
        scheduled = []
        self.patch(reactor, "callFromThread", lambda f, *a: scheduled.append((f, a)))
        self.write("opers", "bob two\n")
        handler(signal.SIGHUP, None)
        ((f, args),) = scheduled
        f(*args)
        self.assertEqual(service.host.operators, {"bob": "two"})


class RealSignalTests(SynchronousTestCase):
    """A real host, started without --private, gets a real SIGHUP."""

    def test_hangup_does_not_kill_the_host(self):
        data_dir = os.path.abspath(self.mktemp())
        os.makedirs(data_dir)
        log_path = os.path.join(data_dir, "host.log")
        host = HostProcess(data_dir, log_path)
        self.addCleanup(host.stop)
        host.port()
        host.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while True:
            with open(log_path) as f:
                log = f.read()
            if re.search("SIGHUP: nothing to reload", log):
                break
            if host.process.poll() is not None or time.monotonic() > deadline:
                self.fail("no reload line; exit %r: %s" % (host.process.poll(), log))
            # Polling a log file has no event to wait on; bounded.
            time.sleep(0.05)
        self.assertIsNone(host.process.poll())
        # And it still stops cleanly on SIGTERM (twistd then exits by
        # that signal, after its reactor has stopped).
        host.process.terminate()
        self.assertEqual(host.process.wait(30), -signal.SIGTERM)
        with open(log_path) as f:
            self.assertIn("Main loop terminated.", f.read())
