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


def screen_lines(data):
    """The lines a terminal shows for C{data}: enough of a VT100 for the
    client's line editor (CR, LF, erase line, cursor left/right, and
    other CSI sequences ignored)."""
    lines = [[]]
    column = 0
    i = 0
    text = data.decode("utf-8", "replace")
    while i < len(text):
        char = text[i]
        if char == "\x1b" and text[i + 1 : i + 2] == "[":
            j = i + 2
            while j < len(text) and not text[j].isalpha():
                j += 1
            arguments, final = text[i + 2 : j], text[j : j + 1]
            count = int(arguments) if arguments.isdigit() else 1
            line = lines[-1]
            if final == "K":
                if arguments == "2":
                    line.clear()
                else:
                    del line[column:]
            elif final == "D":
                column = max(column - count, 0)
            elif final == "C":
                column += count
            i = j + 1
            continue
        if char == "\r":
            column = 0
        elif char == "\n":
            lines.append([])
            column = 0
        elif char.isprintable():
            line = lines[-1]
            line.extend(" " * (column - len(line)))
            line[column : column + 1] = [char]
            column += 1
        i += 1
    return ["".join(line).rstrip() for line in lines]


class JoinProcessTests(RunningHostMixin, TestCase):
    """C{chatroom join} as a child process against a running host: on a
    terminal (a pseudo-terminal here), or reading lines from a pipe."""

    timeout = 60

    @defer.inlineCallbacks
    def join(self, nick, process, terminal):
        """Start a host, then C{chatroom join lobby --nick NICK} into it,
        reporting to C{process}; on a pseudo-terminal when C{terminal}."""
        self.make_data_dir()
        port = yield self.start_host()
        argv = [
            "join",
            "lobby",
            "--nick",
            nick,
            "--connect",
            "127.0.0.1:%d" % (port,),
            "--key",
            self.identity.fingerprint,
            "--data-dir",
            os.path.abspath(self.mktemp()),
        ]
        env = dict(os.environ, PYTHONPATH=ROOT)
        if terminal:
            env["TERM"] = "xterm"
        reactor.spawnProcess(
            process,
            sys.executable,
            [sys.executable, "-c", "from chatroom.client.main import main; main()"]
            + argv,
            env=env,
            path=ROOT,
            usePTY=terminal,
        )

    @defer.inlineCallbacks
    def test_left_on_its_own_line(self):
        """ "Left #lobby." starts a line of its own, not the prompt's
        (left with C{/quit} on a terminal)."""
        process = ConsoleProcess()
        prompt = defer.Deferred()

        def received(data, out=process.outReceived):
            out(data)
            if b"[#lobby q] " in process.out and not prompt.called:
                prompt.callback(None)

        process.outReceived = received
        yield self.join("q", process, terminal=True)
        yield prompt
        process.transport.write(b"/quit\r")
        code = yield process.ended
        self.assertEqual(code, 0, process.out)
        lines = screen_lines(process.out)
        self.assertIn("Left #lobby.", lines, lines)
        self.assertNotIn("Traceback", process.out.decode("utf-8", "replace"))

    @defer.inlineCallbacks
    def test_messages_piped_in_are_shown_before_leaving(self):
        """Input from a pipe that ends at once still shows the messages it
        sent (their echoes arrive while the session closes), then "Left"."""
        process = ConsoleProcess()
        yield self.join("piper", process, terminal=False)
        process.transport.write(b"piped one\npiped two\n")
        process.transport.closeStdin()
        code = yield process.ended
        out = process.out.decode("utf-8", "replace")
        self.assertEqual(code, 0, out + process.err.decode("utf-8", "replace"))
        lines = out.splitlines()
        shown = [line for line in lines if "piped" in line and "piper>" in line]
        self.assertEqual(len(shown), 2, lines)
        self.assertIn("piped one", shown[0])
        self.assertIn("piped two", shown[1])
        self.assertEqual(lines[-1], "Left #lobby.")
