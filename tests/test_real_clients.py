"""Stock IRC clients (irssi, WeeChat) join a host over pinned TLS and chat.

Both run as real processes from Debian's packages (installed by .ci/run).
Every step waits on what the host's other member, a bot, sees: the
client's JOIN, its message, its automatic reply to a CTCP VERSION sent to
the channel (which proves it received and parsed the channel line), and its
QUIT; and that /whois, /list and /away get the numerics that end them
(seen on the host's side of the client's connection) and that a ban set
by an operator keeps the client out.  Nothing here waits on a clock.
"""

import os
import shutil
import subprocess

from twisted.internet import defer, protocol, reactor
from twisted.trial.unittest import TestCase

from chatroom.host import Limits
from chatroom.identity import colon_hex

from .running_host import RunningHostMixin


def _from(nick):
    return lambda m: (m.prefix or "").split("!")[0] == nick


class ProcessExit(protocol.ProcessProtocol):
    """Fires C{exited} when the process ends; keeps its output."""

    def __init__(self):
        self.exited = defer.Deferred()
        self.output = b""

    def outReceived(self, data):
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason):
        self.exited.callback(reason.value.exitCode)


class RealClientMixin(RunningHostMixin):
    """The conversation every stock client must manage."""

    timeout = 60
    nick = None

    def setUp(self):
        self.make_data_dir()
        self.home = os.path.abspath(self.mktemp())
        os.makedirs(self.home)

    def start_client(self, port):
        """Start the client so it connects with its pin and joins #lobby."""
        raise NotImplementedError

    def type_line(self, text):
        """Have the client's user type C{text} in the #lobby window."""
        raise NotImplementedError

    def stop_client(self):
        """Clean up the client process if it is still running."""

    @defer.inlineCallbacks
    def test_conversation(self):
        port = yield self.start_host()
        bot, seen = yield self.connect(port, "bot")
        yield bot.join("#lobby")
        joined = bot.wait_for(lambda m: m.command == "JOIN" and _from(self.nick)(m))
        self.start_client(port)
        self.addCleanup(self.stop_client)
        yield joined

        said = bot.wait_for(lambda m: m.command == "PRIVMSG" and _from(self.nick)(m))
        self.type_line("hello from a stock client")
        message = yield said
        self.assertEqual(message.params, ("#lobby", "hello from a stock client"))

        replied = bot.wait_for(lambda m: m.command == "NOTICE" and _from(self.nick)(m))
        bot.send("PRIVMSG", "#lobby", "\x01VERSION\x01")
        notice = yield replied
        self.assertTrue(notice.params[1].startswith("\x01VERSION "), notice.params)

        quit = bot.wait_for(lambda m: m.command == "QUIT" and _from(self.nick)(m))
        self.type_line("/quit bye")
        yield quit
        history = yield bot.history("#lobby", "LATEST", "*")
        self.assertIn(
            "hello from a stock client",
            [m.params[1] for m in history if m.command == "PRIVMSG"],
        )

    def watch_output(self):
        """Tee what the host writes to the stock client's connection; return
        C{wait(code)}, a Deferred firing when the host sends it numeric
        C{code} (the answer the client's command expects)."""
        (connection,) = [
            c for c in self.service.host.connections if c.nick == self.nick
        ]
        waiters = []
        write = connection.write

        def tee(data):
            for line in data.split(b"\r\n"):
                for code, waiter in list(waiters):
                    if line.split(b" ")[1:2] == [code.encode()]:
                        waiters.remove((code, waiter))
                        waiter.callback(line.decode("utf-8"))
            write(data)

        connection.write = tee

        def wait(code):
            waiter = defer.Deferred()
            waiters.append((code, waiter))
            return waiter

        return wait

    @defer.inlineCallbacks
    def test_whois_list_away_ban(self):
        """/whois, /list and /away get their answers; a ban an operator
        sets keeps the client out of the room."""
        port = yield self.start_host(Limits(flood_rate=0, open_rooms=True))
        bot, seen = yield self.connect(port, "bot")
        yield bot.join("#lobby")
        joined = bot.wait_for(lambda m: m.command == "JOIN" and _from(self.nick)(m))
        self.start_client(port)
        self.addCleanup(self.stop_client)
        yield joined
        wait = self.watch_output()

        end = wait("318")
        self.type_line("/whois bot")
        self.assertIn(" bot ", (yield end))

        end = wait("323")
        listed = wait("322")
        self.type_line("/list #lobby")
        self.assertIn("#lobby 2", (yield listed))
        yield end

        marked = wait("306")
        self.type_line("/away gone fishing")
        yield marked
        bot.send("WHOIS", self.nick)
        away = yield bot.wait_for(lambda m: m.command == "301")
        self.assertEqual(away.params[1:], (self.nick, "gone fishing"))

        yield bot.join("#ops")  # bot opens it: its operator
        banned = bot.wait_for(lambda m: m.command == "MODE")
        bot.send("MODE", "#ops", "+b", self.nick)
        yield banned
        refused = wait("474")
        self.type_line("/join #ops")
        self.assertIn("#ops", (yield refused))
        self.assertNotIn(
            self.nick, [m.nick for m in self.service.host.find_room("#ops").members]
        )


class IrssiTests(RealClientMixin, TestCase):
    """irssi, pinning the public key, driven through tmux."""

    nick = "irssiuser"

    def setUp(self):
        for program in ("irssi", "tmux"):
            if shutil.which(program) is None:
                raise self.skipTest(
                    "%s is not installed (.ci/run installs it)" % (program,)
                )
        super().setUp()
        self.socket = "chatroom-test-%d" % (os.getpid(),)

    def start_client(self, port):
        pin = colon_hex(self.identity.spki_sha256)
        with open(os.path.join(self.home, "config"), "w") as f:
            f.write(
                """
servers = ( { address = "127.0.0.1"; port = "%d"; chatnet = "local";
              use_tls = "yes"; tls_verify = "no"; tls_pinned_pubkey = "%s";
              autoconnect = "yes"; } );
chatnets = { local = { type = "IRC"; }; };
channels = ( { name = "#lobby"; chatnet = "local"; autojoin = "yes"; } );
settings = { core = { real_name = "Irssi User"; user_name = "irssi";
                      nick = "%s"; }; };
"""
                % (port, pin, self.nick)
            )
        subprocess.run(
            [
                "tmux",
                "-L",
                self.socket,
                "new-session",
                "-d",
                "-x",
                "200",
                "-y",
                "50",
                "irssi --home=%s" % (self.home,),
            ],
            check=True,
            timeout=30,
        )

    def type_line(self, text):
        if not text.startswith("/"):
            # The window in front may be the status window, not #lobby.
            text = "/msg #lobby " + text
        subprocess.run(
            ["tmux", "-L", self.socket, "send-keys", "-t", "0", "-l", text],
            check=True,
            timeout=30,
        )
        subprocess.run(
            ["tmux", "-L", self.socket, "send-keys", "-t", "0", "Enter"],
            check=True,
            timeout=30,
        )

    def stop_client(self):
        subprocess.run(
            ["tmux", "-L", self.socket, "kill-server"], timeout=30, capture_output=True
        )


class WeeChatTests(RealClientMixin, TestCase):
    """WeeChat 3.8, pinning the certificate, driven through its FIFO."""

    nick = "weeuser"

    def setUp(self):
        if shutil.which("weechat-headless") is None:
            raise self.skipTest(
                "weechat-headless is not installed (.ci/run installs it)"
            )
        super().setUp()
        self.process = None

    def start_client(self, port):
        fingerprint = self.identity.certificate_sha256.hex()
        self.fifo = os.path.join(self.home, "fifo")
        commands = ";".join(
            [
                "/set fifo.file.path %s" % (self.fifo,),
                "/set irc.server_default.nicks %s" % (self.nick,),
                "/server add room 127.0.0.1/%d -ssl -ssl_fingerprint=%s"
                % (port, fingerprint),
                "/set irc.server.room.autojoin #lobby",
                "/connect room",
            ]
        )
        self.exit = ProcessExit()
        self.process = reactor.spawnProcess(
            self.exit,
            shutil.which("weechat-headless"),
            ["weechat-headless", "-d", self.home, "-a", "-r", commands],
            env={"PATH": os.environ.get("PATH", ""), "HOME": self.home},
        )

    def type_line(self, text):
        # The FIFO exists: the client joined, so WeeChat is fully started.
        # Commands go to the server buffer, which exists since the connect;
        # the #lobby buffer may not exist yet when the bot sees the JOIN.
        if not text.startswith("/"):
            text = "/msg #lobby " + text
        with open(self.fifo, "w") as f:
            f.write("irc.server.room *" + text + "\n")

    def stop_client(self):
        if self.exit.exited.called:
            return None
        self.process.signalProcess("TERM")
        return self.exit.exited
