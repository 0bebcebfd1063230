"""Server operators: OPER, KILL, WALLOPS, INFO, user modes; --oper-file."""

import os

from twisted.internet.task import Clock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from chatroom import tap
from chatroom.history import HistoryStore
from chatroom.host import Limits, RoomHost

from .fakes import FakeClient, make_host


def lines(client):
    """The lines written so far as text, cleared."""
    return client.raw().decode("utf-8").split("\r\n")[:-1]


class OperatorTests(SynchronousTestCase):
    def setUp(self):
        self.host = make_host(limits=Limits(flood_rate=0))
        self.host.operators = {"root": "s3cret"}
        self.alice = FakeClient(self.host).register("alice").join()
        self.bob = FakeClient(self.host).register("bob").join()
        self.alice.raw()

    def test_oper(self):
        self.alice.send("OPER root wrong", "OPER nobody s3cret", "OPER root")
        self.assertEqual(lines(self.alice), [
            ":test.host 464 alice :Password incorrect"] * 2 + [
            ":test.host 461 alice OPER :Not enough parameters"])
        self.assertEqual(self.host.counters["oper-failures"], 2)
        self.alice.send("OPER root s3cret", "MODE alice")
        self.assertEqual(lines(self.alice), [
            ":alice!~alice@127.0.0.1 MODE alice +o",
            ":test.host 381 alice :You are now an IRC operator",
            ":test.host 221 alice +io",
        ])
        self.bob.send("WHOIS alice", "USERHOST alice", "WHO alice", "LUSERS")
        got = lines(self.bob)
        self.assertIn(":test.host 313 bob alice :is an IRC operator", got)
        self.assertIn(":test.host 302 bob alice*=+~alice@127.0.0.1", got)
        self.assertIn(":test.host 352 bob * ~alice 127.0.0.1 test.host alice H* "
                      ":0 Alice", got)
        self.assertIn(":test.host 252 bob 1 :IRC Operators online", got)

    def test_status_belongs_to_the_connection(self):
        self.alice.send("OPER root s3cret")
        self.alice.disconnect()
        again = FakeClient(self.host).register("alice")
        again.send("KILL bob :x")
        self.assertEqual(again.commands(), ["481"])

    def test_kill(self):
        self.bob.send("KILL alice :spam")
        self.assertEqual(lines(self.bob), [
            ":test.host 481 bob :Permission Denied- You're not an IRC operator"])
        self.alice.send("OPER root s3cret")
        self.alice.raw()
        self.alice.send("KILL nobody", "KILL bob :flooding the room")
        self.assertEqual(lines(self.alice), [
            ":test.host 401 alice nobody :No such nick/channel"])
        self.assertEqual(lines(self.bob), [
            "ERROR :Closing link: 127.0.0.1 (Killed (alice (flooding the room)))"])
        self.assertTrue(self.bob.transport.disconnecting)
        self.bob.disconnect()  # the transport closes
        self.assertEqual(lines(self.alice), [
            ":bob!~bob@127.0.0.1 QUIT :Killed (alice (flooding the room))"])
        self.assertEqual(self.host.counters["kills"], 1)

    def test_wallops(self):
        carol = FakeClient(self.host).register("carol")
        self.bob.send("MODE bob +w")
        self.assertEqual(lines(self.bob), [":bob!~bob@127.0.0.1 MODE bob +w"])
        self.bob.send("WALLOPS :hi")
        self.assertEqual(self.bob.commands(), ["481"])
        self.alice.send("OPER root s3cret")
        self.alice.raw()
        self.alice.send("WALLOPS :maintenance at noon")
        self.assertEqual(lines(self.bob), [
            ":alice!~alice@127.0.0.1 WALLOPS :maintenance at noon"])
        self.assertEqual(carol.raw(), b"")
        self.assertEqual(self.alice.raw(), b"")

    def test_user_modes(self):
        self.alice.send("MODE alice +wx", "MODE alice -o", "MODE bob +w", "MODE nobody")
        self.assertEqual(lines(self.alice), [
            ":test.host 501 alice :Unknown MODE flag",
            ":alice!~alice@127.0.0.1 MODE alice +w",
            ":test.host 502 alice :Can't change mode for other users",
            ":test.host 401 alice nobody :No such nick/channel",
        ])

    def test_info(self):
        self.alice.send("INFO")
        self.assertEqual(self.alice.commands(), ["371", "371", "371", "374"])


class OperFileTests(SynchronousTestCase):
    def write(self, text, mode=0o600):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def parse(self, path):
        options = tap.Options()
        self.addCleanup(lambda: options.get("store") and options["store"].close())
        options.parseOptions(["--data-dir", self.mktemp(), "--oper-file", path])
        return options

    def test_read(self):
        options = self.parse(self.write("# operators\nroot s3cret\n\nanna pw\n"))
        self.assertEqual(options["operators"], {"root": "s3cret", "anna": "pw"})
        host = RoomHost(HistoryStore(":memory:"), Clock(), "h", (),
                        operators=options["operators"])
        self.assertEqual(host.operators["anna"], "pw")

    def test_readable_by_others_refused(self):
        error = self.assertRaises(usage.UsageError, self.parse,
                                  self.write("root s3cret\n", 0o644))
        self.assertIn("chmod 600", str(error))

    def test_malformed_line(self):
        error = self.assertRaises(usage.UsageError, self.parse,
                                  self.write("root\n"))
        self.assertIn("line 1", str(error))
