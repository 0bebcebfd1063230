"""Stopping 'tail --follow' and 'rooms --watch' with SIGTERM or Ctrl-C (SIGINT).

Real processes: the console script runs in a child process against a host
in this test's reactor on 127.0.0.1, and gets a real signal once it has
printed something (so it is past its start-up).
"""

import io
import os
import random
import signal
import sys

from twisted.internet import defer, protocol, reactor
from twisted.trial.unittest import TestCase

import chatroom
from chatroom.client.main import run

from .running_host import RunningHostMixin

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(chatroom.__file__)))


class ConsoleProcess(protocol.ProcessProtocol):
    """The console script as a child process: its output and exit status."""

    def __init__(self):
        self.out = b""
        self.err = b""
        self.printed = defer.Deferred()
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.out += data
        if not self.printed.called:
            self.printed.callback(None)

    def errReceived(self, data):
        self.err += data

    def processEnded(self, reason):
        self.ended.callback(reason.value.exitCode)


def spawn(data_home, *argv):
    process = ConsoleProcess()
    reactor.spawnProcess(
        process,
        sys.executable,
        [sys.executable, "-c", "from chatroom.client.main import main; main()", *argv],
        env=dict(os.environ, PYTHONPATH=ROOT, XDG_DATA_HOME=data_home),
        path=ROOT,
    )
    return process


class StopTests(RunningHostMixin, TestCase):
    """Issue 12 item 7: a quiet stop, status 0 on SIGTERM, 130 on SIGINT."""

    timeout = 60

    def setUp(self):
        self.make_data_dir()
        self.discovery = [
            "--discovery-interface",
            "127.0.0.1",
            "--discovery-port",
            str(random.randint(20000, 40000)),
        ]

    @defer.inlineCallbacks
    def stop(self, argv, signum):
        process = spawn(os.path.abspath(self.mktemp()), *argv)
        yield process.printed
        os.kill(process.transport.pid, signum)
        code = yield process.ended
        return code, process.out.decode(), process.err.decode()

    @defer.inlineCallbacks
    def tail(self, signum):
        port = yield self.start_host()
        connect = [
            "--connect",
            "127.0.0.1:%d" % (port,),
            "--key",
            self.identity.fingerprint,
            *self.discovery,
        ]
        yield run(
            reactor,
            [
                "say",
                "lobby",
                "something to show",
                "--nick",
                "w",
                "--data-dir",
                self.mktemp(),
                *connect,
            ],
            io.StringIO(),
            io.StringIO(),
        )
        result = yield self.stop(
            ["tail", "lobby", "--follow", "--nick", "t", *connect], signum
        )
        return result

    def assertQuiet(self, err):
        self.assertNotIn("GeneratorExit", err)
        self.assertNotIn("Traceback", err)

    @defer.inlineCallbacks
    def test_tail_follow_sigterm(self):
        code, out, err = yield self.tail(signal.SIGTERM)
        self.assertIn("something to show", out)
        self.assertQuiet(err)
        self.assertEqual(code, 0, err)

    @defer.inlineCallbacks
    def test_tail_follow_sigint(self):
        code, out, err = yield self.tail(signal.SIGINT)
        self.assertQuiet(err)
        self.assertEqual(code, 130, err)

    @defer.inlineCallbacks
    def test_rooms_watch_sigterm(self):
        code, out, err = yield self.stop(
            ["rooms", "--watch", "--listen-time", "0.2", *self.discovery],
            signal.SIGTERM,
        )
        self.assertQuiet(err)
        self.assertEqual(code, 0, err)

    @defer.inlineCallbacks
    def test_rooms_watch_sigint(self):
        code, out, err = yield self.stop(
            ["rooms", "--watch", "--listen-time", "0.2", *self.discovery], signal.SIGINT
        )
        self.assertQuiet(err)
        self.assertEqual(code, 130, err)
