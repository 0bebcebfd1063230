"""The chatroom console script, run in-process against hosts on loopback."""

import io
import json
import os
import random
import subprocess
import sys

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

import chatroom
from chatroom.client import errors
from chatroom.client.main import default_nick, run, spki_pin
from chatroom.client.session import RoomFinder
from chatroom.core.search import Ring
from chatroom.history import HistoryStore
from chatroom.host import Limits
from chatroom.identity import HostIdentity, colon_hex
from chatroom.service import DiscoverySettings, HostService

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(chatroom.__file__)))


class ConsoleTests(TestCase):
    """rooms, find, pins, say and tail against real hosts on 127.0.0.1."""

    timeout = 60

    def setUp(self):
        self.discovery_port = random.randint(20000, 40000)
        self.data_dir = self.mktemp()
        self.common = [
            "--data-dir",
            self.data_dir,
            "--discovery-interface",
            "127.0.0.1",
            "--discovery-port",
            str(self.discovery_port),
        ]

    @defer.inlineCallbacks
    def start_host(self, rooms=("lobby",), identity=None):
        identity = identity or HostIdentity.generate()
        data_dir = self.mktemp()
        os.makedirs(data_dir)
        host = HostService(
            reactor,
            identity,
            HistoryStore(os.path.join(data_dir, "h.sqlite3")),
            list(rooms),
            tls_port=0,
            tls_interface="127.0.0.1",
            limits=Limits(flood_rate=0),
            discovery=DiscoverySettings(
                interface="127.0.0.1", port=self.discovery_port
            ),
        )
        host.startService()
        self.addCleanup(host.stopService)
        self.host_service = host
        (port,) = yield host.listening_ports()
        return identity, port.getHost().port

    @defer.inlineCallbacks
    def chatroom(self, *argv):
        """Run one command line; returns (exit code, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        try:
            yield run(reactor, list(argv), out, err)
            code = 0
        except SystemExit as e:
            code = e.code
        return code, out.getvalue(), err.getvalue()

    def say_with_key(self, port, key, text="hi", *extra):
        """C{chatroom say lobby TEXT --connect 127.0.0.1:PORT --key KEY}."""
        return self.chatroom(
            "say",
            "--connect",
            "127.0.0.1:%d" % (port,),
            "--key",
            key,
            "lobby",
            text,
            *extra,
            *self.common,
        )

    @defer.inlineCallbacks
    def test_rooms_json(self):
        identity, port = yield self.start_host(["lobby", "dev"])
        code, out, err = yield self.chatroom(
            "rooms", "--json", "--listen-time", "0.5", *self.common
        )
        self.assertEqual((code, err), (0, ""))
        rooms = json.loads(out)
        self.assertEqual([r["room"] for r in rooms], ["dev", "lobby"])
        lobby = rooms[1]
        self.assertEqual(lobby["public_key"], identity.public_key.hex())
        self.assertEqual(lobby["fingerprint"], identity.fingerprint)
        self.assertNotIn("key", lobby)
        self.assertEqual(lobby["short_fingerprint"], identity.short_fingerprint)
        self.assertEqual(lobby["addresses"], ["127.0.0.1:%d" % (port,)])
        self.assertEqual(lobby["spec"], identity.short_fingerprint + "/lobby")
        self.assertEqual(lobby["irssi_pin"], colon_hex(identity.spki_sha256))
        self.assertFalse(lobby["private"])
        self.assertGreaterEqual(lobby["last_heard_seconds_ago"], 0)

    @defer.inlineCallbacks
    def test_rooms_table_and_commands(self):
        identity, port = yield self.start_host()
        code, out, err = yield self.chatroom(
            "rooms", "--commands", "--listen-time", "0.5", *self.common
        )
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        self.assertEqual(
            lines[0].split(), ["ROOM", "FINGERPRINT", "ADDRESSES", "HEARD", "FLAGS"]
        )
        self.assertEqual(
            lines[1].split()[:3],
            ["lobby", identity.short_fingerprint, "127.0.0.1:%d" % (port,)],
        )
        self.assertIn(
            "irssi:   /connect -tls -tls_pinned_pubkey %s 127.0.0.1 %d"
            % (colon_hex(identity.spki_sha256), port),
            out,
        )
        self.assertIn(
            "-ssl -ssl_fingerprint=%s" % (identity.certificate_sha256.hex(),), out
        )

    @defer.inlineCallbacks
    def test_rooms_none(self):
        code, out, err = yield self.chatroom(
            "rooms", "--listen-time", "0.2", *self.common
        )
        self.assertEqual(code, 0)
        self.assertIn("No rooms heard on 127.0.0.1", out)

    def test_spki_pin_from_q_alone(self):
        identity = HostIdentity.generate()
        self.assertEqual(spki_pin(identity.public_key), colon_hex(identity.spki_sha256))

    @defer.inlineCallbacks
    def test_find(self):
        identity, port = yield self.start_host()
        code, out, err = yield self.chatroom("find", "lobby", *self.common)
        self.assertEqual(code, 0, err)
        self.assertIn(
            "%s/lobby  at 127.0.0.1:%d" % (identity.short_fingerprint, port), out
        )
        self.assertIn("  key fingerprint %s\n" % (identity.fingerprint,), out)
        self.assertIn("  public key %s\n" % (identity.public_key.hex(),), out)
        code, out, err = yield self.chatroom(
            "find", "--json", identity.short_fingerprint + "/lobby", *self.common
        )
        self.assertEqual(code, 0, err)
        found = json.loads(out)
        self.assertEqual(found["addresses"], ["127.0.0.1:%d" % (port,)])
        self.assertEqual(found["public_key"], identity.public_key.hex())
        self.assertEqual(found["fingerprint"], identity.fingerprint)

    @defer.inlineCallbacks
    def test_find_ambiguous(self):
        """Two hosts serve lobby: the user is asked to pick by fingerprint."""
        first, _ = yield self.start_host()
        second, second_port = yield self.start_host()
        code, out, err = yield self.chatroom("find", "lobby", *self.common)
        self.assertEqual(code, 1)
        self.assertEqual(len(err.splitlines()), 1)
        self.assertIn("2 hosts serve a room called lobby", err)
        self.assertIn(first.short_fingerprint + "/lobby", err)
        self.assertIn(second.short_fingerprint + "/lobby", err)
        # Naming one resolves it.
        code, out, err = yield self.chatroom(
            "find", second.short_fingerprint + "/lobby", *self.common
        )
        self.assertEqual(code, 0, err)
        self.assertIn("127.0.0.1:%d" % (second_port,), out)

    @defer.inlineCallbacks
    def test_no_such_room(self):
        """Short rings keep the test quick; the error is one sentence."""
        finder = RoomFinder(
            reactor, port=self.discovery_port, rings=[Ring(1, 0.2), Ring(2, 0.2)]
        )
        yield finder.start()
        self.addCleanup(finder.stop)
        failure = yield self.assertFailure(finder.find("nowhere"), errors.NoSuchRoom)
        self.assertIn("No room nowhere answered", str(failure))
        # A room that is not opened yet cannot be heard: say how to name
        # the host that would open it.
        self.assertIn("--connect ADDRESS:PORT --key FINGERPRINT", str(failure))

    @defer.inlineCallbacks
    def test_bad_spec(self):
        code, out, err = yield self.chatroom("find", "zz/lobby", *self.common)
        self.assertEqual(code, 1)
        self.assertIn("is not a room: write ROOM or FINGERPRINT/ROOM", err)

    @defer.inlineCallbacks
    def test_say_then_tail_json(self):
        identity, port = yield self.start_host()
        code, out, err = yield self.chatroom(
            "say", "lobby", "hello\nsecond line", "--nick", "scripter", *self.common
        )
        self.assertEqual((code, out, err), (0, "", ""))
        code, events, err = yield self.tail_json(identity, port)
        self.assertEqual(code, 0, err)
        messages = [(e["sender"], e["text"]) for e in events if e["kind"] == "message"]
        self.assertEqual(messages, [("scripter", "hello"), ("scripter", "second line")])
        seqs = [e["seq"] for e in events]
        self.assertEqual(seqs, sorted(seqs))

    def tail_json(self, identity, port, *extra):
        """C{chatroom tail --json lobby --nick reader ...}; (code, events, err)."""
        d = self.chatroom(
            "tail",
            "--json",
            "--nick",
            "reader",
            "--connect",
            "127.0.0.1:%d" % (port,),
            "--key",
            identity.public_key.hex(),
            "lobby",
            *extra,
            *self.common,
        )
        return d.addCallback(
            lambda r: (r[0], [json.loads(line) for line in r[1].splitlines()], r[2])
        )

    @defer.inlineCallbacks
    def test_tail_closed_room_without_its_own_join(self):
        """A closed room is joined to be read; the tail's own JOIN is not
        printed as the room's latest event."""
        identity, port = yield self.start_host()
        self.host_service.host.find_room("#lobby").modes.add("s")
        yield self.chatroom("say", "lobby", "hello", "--nick", "scripter", *self.common)
        code, events, err = yield self.tail_json(identity, port)
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(
            [(e["kind"], e["sender"]) for e in events],
            [("join", "scripter"), ("message", "scripter"), ("quit", "scripter")],
        )
        # What the others read when a one-shot command leaves.
        self.assertEqual(events[-1]["text"], "Quit: chatroom say")

    def holder_session(self, identity, port, nick, seen, statuses):
        """A running session (C{chatroom join} or C{tail --follow}) of the
        same user as the commands: it presents the data directory's client
        key and resumes its own session (the takeover capability)."""
        from chatroom.client.keys import load_client_identity
        from chatroom.client.reconnect import RoomTarget
        from chatroom.client.session import RoomSession

        holder = RoomSession(
            reactor,
            RoomTarget(identity.public_key, "lobby", ("127.0.0.1:%d" % (port,),)),
            nick,
            on_event=seen.append,
            on_status=statuses.append,
            identity=load_client_identity(self.data_dir),
        )
        self.addCleanup(holder.close)
        return holder.connect()

    def assert_undisturbed(self, holder, nick, statuses):
        """C{holder} kept its connection and its nick: nothing took it over."""
        self.assertTrue(holder.joined)
        self.assertEqual(holder.nick, nick)
        self.assertEqual(statuses, [])
        self.assertNotIn("ghosts-taken-over", self.host_service.host.counters, statuses)

    @defer.inlineCallbacks
    def test_tail_while_the_nick_is_taken(self):
        """A one-shot tail of the same user (the same client key) while a
        session of its own holds the nick comes in as reader_, prints the
        history, says nothing about getting the nick back, and leaves the
        session alone."""
        identity, port = yield self.start_host()
        statuses = []
        holder = yield self.holder_session(identity, port, "reader", [], statuses)
        status = io.StringIO()  # tail writes what happens to standard error
        self.patch(sys, "stderr", status)
        code, events, err = yield self.tail_json(identity, port)
        self.assertEqual((code, err, status.getvalue()), (0, "", ""))
        self.assertEqual(
            [(e["kind"], e["sender"]) for e in events], [("join", "reader")]
        )
        self.assert_undisturbed(holder, "reader", statuses)

    @defer.inlineCallbacks
    def test_two_sessions_of_one_key_do_not_take_turns(self):
        """A second running session of the same user takes the nick over
        (it asks to resume); the first is told so, reconnects as hank_ and
        does not take the nick back: one takeover, not one every second."""
        from chatroom.client.keys import load_client_identity
        from chatroom.client.reconnect import RoomTarget
        from chatroom.client.session import RoomSession

        identity, port = yield self.start_host()
        target = RoomTarget(identity.public_key, "lobby", ("127.0.0.1:%d" % (port,),))
        key = load_client_identity(self.data_dir)
        statuses = []
        back = defer.Deferred()

        def status(text):
            statuses.append(text)
            if text.startswith("Reconnected") and not back.called:
                back.callback(None)

        first = RoomSession(
            reactor, target, "hank", on_status=status, identity=key, policy=lambda n: 0
        )
        self.addCleanup(first.close)
        yield first.connect()
        second = RoomSession(reactor, target, "hank", identity=key)
        self.addCleanup(second.close)
        yield second.connect()
        yield back.addTimeout(10, reactor)
        self.assertEqual((second.nick, first.nick), ("hank", "hank_"))
        self.assertFalse(first.take_over)
        self.assertIn("Another chatroom program with your key took over", statuses[0])
        self.assertEqual(self.host_service.host.counters["ghosts-taken-over"], 1)

    @defer.inlineCallbacks
    def test_say_while_the_nick_is_taken(self):
        """Issue 12 item 1: with 'tail --follow' holding the default nick in
        one terminal, 'say' in another comes in as nick_ and delivers; with
        the same client key it does not take the nick from the follower."""
        identity, port = yield self.start_host()
        seen, statuses = [], []
        holder = yield self.holder_session(identity, port, "scripter", seen, statuses)
        code, out, err = yield self.chatroom(
            "say",
            "lobby",
            "from the other terminal",
            "--nick",
            "scripter",
            *self.common,
        )
        self.assertEqual((code, err), (0, ""))
        self.assertIn(
            ("scripter_", "from the other terminal"), [(e.sender, e.text) for e in seen]
        )
        self.assert_undisturbed(holder, "scripter", statuses)

    def test_every_command_says_where_the_key_is_kept(self):
        """Each command's --data-dir help names its default (whoami's did
        not)."""
        from contextlib import redirect_stdout

        from chatroom.client.main import build_parser

        for command in ("rooms", "find", "pins", "say", "tail", "join", "whoami"):
            out = io.StringIO()
            with redirect_stdout(out), self.assertRaises(SystemExit):
                build_parser().parse_args([command, "--help"])
            self.assertIn("~/.local/share/chatroom", " ".join(out.getvalue().split()))

    def test_join_nick_defaults_to_the_user_name(self):
        from chatroom.client.main import build_parser

        args = build_parser().parse_args(["join", "lobby"])
        self.assertIsNone(args.nick)

    @defer.inlineCallbacks
    def test_pins(self):
        identity, port = yield self.start_host()
        code, out, err = yield self.chatroom("pins", "lobby", *self.common)
        self.assertEqual(code, 0, err)
        self.assertIn(
            "certificate pin (WeeChat): %s" % (identity.certificate_sha256.hex(),), out
        )
        self.assertIn(
            "public-key pin (irssi):   %s" % (colon_hex(identity.spki_sha256),), out
        )

    @defer.inlineCallbacks
    def test_key_takes_what_the_host_prints(self):
        """Issue 12 item 6: --key takes the public key, the key fingerprint
        the host prints at start, or the short fingerprint."""
        identity, port = yield self.start_host()
        for n, key in enumerate(
            (
                identity.public_key.hex(),
                identity.fingerprint,
                identity.short_fingerprint,
                identity.fingerprint.upper(),
            )
        ):
            code, out, err = yield self.say_with_key(
                port, key, "form %d" % (n,), "--nick", "x%d" % (n,)
            )
            self.assertEqual((code, err), (0, ""), key)
        code, out, err = yield self.chatroom(
            "tail",
            "--json",
            "--connect",
            "127.0.0.1:%d" % (port,),
            "--key",
            identity.short_fingerprint,
            "lobby",
            *self.common,
        )
        self.assertEqual(
            [
                json.loads(line)["text"]
                for line in out.splitlines()
                if json.loads(line)["kind"] == "message"
            ],
            ["form 0", "form 1", "form 2", "form 3"],
        )

    @defer.inlineCallbacks
    def test_bad_key_forms(self):
        identity, port = yield self.start_host()
        for key in ("abc", identity.fingerprint[:20], "zz" * 32):
            code, out, err = yield self.say_with_key(port, key, "hi")
            self.assertEqual(code, 1)
            self.assertIn("--key takes", err)

    @defer.inlineCallbacks
    def test_wrong_fingerprint_with_connect(self):
        identity, port = yield self.start_host()
        other = HostIdentity.generate()
        for key in (other.fingerprint, other.short_fingerprint):
            code, out, err = yield self.say_with_key(port, key, "hi")
            self.assertEqual(code, 1)
            self.assertIn("is not the host --key %s" % (key[:16],), err)
            self.assertIn(
                "its key fingerprint is %s" % (identity.short_fingerprint,), err
            )

    @defer.inlineCallbacks
    def test_wrong_key_with_connect(self):
        identity, port = yield self.start_host()
        other = HostIdentity.generate()
        code, out, err = yield self.say_with_key(
            port, other.public_key.hex(), "hi", "--nick", "x"
        )
        self.assertEqual(code, 1)
        self.assertIn("is not the host --key %s" % (other.public_key.hex()[:16],), err)
        self.assertIn("its key fingerprint is %s" % (identity.short_fingerprint,), err)


class EntryPointTests(TestCase):
    """The installed-style entry point starts and prints its help."""

    def test_help(self):
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "from chatroom.client.main import main; main()",
                "--help",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=ROOT),
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        for command in ("rooms", "find", "join", "say", "tail", "pins"):
            self.assertIn(command, result.stdout)


class DefaultNickTests(TestCase):
    """The nick used when none is given."""

    def test_without_user_in_the_environment(self):
        """Without C{USER} or C{LOGNAME} (cron, some containers), the nick
        is still the user's name, from the password database."""
        import pwd

        environ = {
            k: v
            for k, v in os.environ.items()
            if k not in ("USER", "LOGNAME", "LNAME", "USERNAME")
        }
        self.patch(os, "environ", environ)
        name = pwd.getpwuid(os.getuid()).pw_name
        expected = "".join(c for c in name if c.isalnum() or c in "-_")
        self.assertEqual(default_nick(), expected[:30])

    def test_made_a_valid_nick(self):
        """A user name that does not start with a letter gets a C{u}."""
        self.patch(os, "environ", {**os.environ, "LOGNAME": "1st.admin"})
        self.assertEqual(default_nick(), "u1stadmin")
