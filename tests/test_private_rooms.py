"""Private rooms: the password, the allow-list of client keys, what
non-members cannot see, the options and the SIGHUP re-read."""

import hashlib
import os

from twisted.internet import reactor
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from chatroom import tap
from chatroom.access import AccessFileError, PrivateRooms, read_allow_file
from chatroom.core.room import RoomAccess
from chatroom.history import HistoryStore
from chatroom.host import Limits
from chatroom.identity import HostIdentity
from chatroom.service import HostService

from .fakes import FakeClient, make_host

KEY = b"k" * 32
FINGERPRINT = hashlib.sha256(KEY).hexdigest()


class PrivateRoomTests(SynchronousTestCase):
    """Raw IRC lines against a host whose #lobby is private."""

    def setUp(self):
        self.host = make_host(limits=Limits(flood_rate=0))
        self.room = self.host.rooms["lobby"]
        self.room.access = RoomAccess("sesame", frozenset({FINGERPRINT}))
        self.member = FakeClient(self.host)
        self.member.protocol.client_key = KEY
        self.member.register("alice").join()
        self.member.send("PRIVMSG #lobby :for members only")
        self.member.raw()

    def client(self, key=None):
        client = FakeClient(self.host)
        client.protocol.client_key = key
        return client

    def test_key_on_list_joins(self):
        self.assertIn(self.member.protocol, self.room)

    def test_no_key_no_password_refused(self):
        stranger = self.client().register("eve")
        stranger.send("JOIN #lobby")
        (reply,) = stranger.messages()
        self.assertEqual(reply.command, "473")
        self.assertIn("password", reply.params[-1])
        self.assertNotIn(stranger.protocol, self.room)

    def test_key_not_on_list_told_its_fingerprint(self):
        other = b"o" * 32
        stranger = self.client(other).register("eve")
        stranger.send("JOIN #lobby")
        (reply,) = stranger.messages()
        self.assertEqual(reply.command, "473")
        self.assertIn(hashlib.sha256(other).hexdigest(), reply.params[-1])

    def test_password_as_channel_key_or_pass(self):
        wrong = self.client().register("eve")
        wrong.send("JOIN #lobby guess")
        self.assertEqual(wrong.commands(), ["475"])
        right = self.client().register("bob")
        right.send("JOIN #lobby sesame")
        self.assertEqual(right.commands()[0], "JOIN")
        by_pass = self.client()
        by_pass.send("PASS sesame", "NICK carol", "USER c 0 * :C", "JOIN #lobby")
        self.assertIn("JOIN", by_pass.commands())
        self.assertEqual(self.host.counters["refused-private"], 1)

    def test_non_members_see_nothing(self):
        """No names, no who, no topic, no history for non-members."""
        self.member.send("TOPIC #lobby :secret plans")
        stranger = self.client().register("eve")
        stranger.send(
            "NAMES #lobby",
            "WHO #lobby",
            "TOPIC #lobby",
            "CHATHISTORY LATEST #lobby * 10",
        )
        messages = stranger.messages()
        self.assertEqual([m.command for m in messages], ["366", "315", "442", "FAIL"])
        self.assertEqual(messages[3].params[1], "INVALID_TARGET")
        self.assertNotIn("alice", str(messages))

    def test_hidden_from_list_and_whois(self):
        """LIST leaves the room out and WHOIS does not name it, for
        non-members; a member sees both."""
        stranger = self.client().register("eve")
        stranger.send("LIST", "WHOIS alice")
        text = str(stranger.messages())
        self.assertNotIn("#lobby", text)
        self.member.send("LIST")
        self.assertIn("#lobby", str(self.member.messages()))

    def test_members_see_everything(self):
        self.member.send("NAMES #lobby", "CHATHISTORY LATEST #lobby * 10")
        text = str(self.member.messages())
        self.assertIn("alice", text)
        self.assertIn("for members only", text)

    def test_pass_after_registration(self):
        self.member.send("PASS x")
        self.assertEqual(self.member.commands(), ["462"])


class AllowFileTests(SynchronousTestCase):
    """The allow-list file and its re-reading."""

    def write(self, text):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_read(self):
        path = self.write(
            "# friends\n%s\n\n  %s  # bob\n" % (FINGERPRINT.upper(), "ab" * 32)
        )
        self.assertEqual(read_allow_file(path), {FINGERPRINT, "ab" * 32})

    def test_bad_line_named(self):
        path = self.write("%s\nnot a key\n" % (FINGERPRINT,))
        error = self.assertRaises(AccessFileError, read_allow_file, path)
        self.assertIn("Line 2", str(error))

    def test_reload_keeps_old_list_on_error(self):
        path = self.write("")
        store = HistoryStore(":memory:")
        self.addCleanup(store.close)
        rule = PrivateRooms("", frozenset(), path)
        service = HostService(
            reactor,
            HostIdentity.generate(),
            store,
            ["lobby"],
            tls_port=None,
            private=rule,
        )
        room = service.host.rooms["lobby"]
        self.assertEqual(room.access.allowed, frozenset())
        with open(path, "w") as f:
            f.write(FINGERPRINT + "\n")
        service.reload_access()
        self.assertEqual(room.access.allowed, {FINGERPRINT})
        with open(path, "w") as f:
            f.write("garbage\n")
        service.reload_access()
        self.assertEqual(room.access.allowed, {FINGERPRINT})
        self.flushLoggedErrors()


class AnnouncementTests(SynchronousTestCase):
    """The announcement of a private room sets the private flag."""

    def test_private_flag(self):
        store = HistoryStore(":memory:")
        self.addCleanup(store.close)
        service = HostService(
            reactor,
            HostIdentity.generate(),
            store,
            ["lobby"],
            tls_port=None,
            private=PrivateRooms("pw", frozenset(), None),
        )
        (hosted,) = [service.announced_as(room) for room in service.host.rooms.values()]
        self.assertTrue(hosted.private)
        self.assertFalse(hosted.multicast_delivery)


class OptionsTests(SynchronousTestCase):
    def parse(self, *args):
        options = tap.Options()
        options.parseOptions(["--data-dir", self.mktemp(), *args])
        return options

    def test_private_needs_a_way_in(self):
        self.assertRaises(usage.UsageError, self.parse, "--private")
        self.assertRaises(usage.UsageError, self.parse, "--room-password", "x")
        self.assertRaises(
            usage.UsageError, self.parse, "--private", "--allow-key", "nope"
        )
        options = self.parse(
            "--private", "--allow-key", FINGERPRINT.upper(), "--room-password", "pw"
        )
        rule = options.private()
        self.assertEqual(
            (rule.access.password, rule.access.allowed), ("pw", {FINGERPRINT})
        )
        self.assertIsNone(self.parse().private())

    def test_unreadable_allow_file_is_one_sentence(self):
        options = self.parse(
            "--private", "--allow-file", os.path.join(self.mktemp(), "missing")
        )
        error = self.assertRaises(SystemExit, tap.makeService, options)
        self.assertIn("Cannot read the allow-list", str(error))
