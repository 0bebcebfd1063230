"""Server operators: OPER, KILL, WALLOPS, INFO, user modes; --oper-file."""

import os

from twisted.internet.task import Clock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from chatroom import tap
from chatroom.host import Limits

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
        self.assertEqual(
            lines(self.alice),
            [":test.host 464 alice :Password incorrect"] * 2
            + [":test.host 461 alice OPER :Not enough parameters"],
        )
        self.assertEqual(self.host.counters["oper-failures"], 2)
        self.alice.send("OPER root s3cret", "MODE alice")
        self.assertEqual(
            lines(self.alice),
            [
                ":alice!~alice@127.0.0.1 MODE alice +o",
                ":test.host 381 alice :You are now an IRC operator",
                ":test.host 221 alice +io",
            ],
        )
        self.bob.send("WHOIS alice", "USERHOST alice", "WHO alice", "LUSERS")
        got = lines(self.bob)
        self.assertIn(":test.host 313 bob alice :is an IRC operator", got)
        self.assertIn(":test.host 302 bob alice*=+~alice@127.0.0.1", got)
        self.assertIn(
            ":test.host 352 bob * ~alice 127.0.0.1 test.host alice H* :0 Alice", got
        )
        self.assertIn(":test.host 252 bob 1 :IRC Operators online", got)

    def test_server_operator_may_set_room_modes(self):
        """The host's own rooms (--room) have no operators; a server
        operator may change their modes, and so give room operators."""
        self.alice.send("MODE #lobby +o alice")
        self.assertEqual(self.alice.commands(), ["482"])
        self.alice.send("OPER root s3cret")
        self.alice.raw()
        self.alice.send("MODE #lobby +o alice")
        self.assertEqual(
            lines(self.bob)[-1], ":alice!~alice@127.0.0.1 MODE #lobby +o alice"
        )
        self.bob.send("MODE #lobby +o bob")
        self.assertEqual(self.bob.commands(), ["482"])
        self.alice.send("KICK #lobby bob :moderated")
        self.assertEqual(self.bob.messages()[-1].command, "KICK")

    def test_status_belongs_to_the_connection(self):
        self.alice.send("OPER root s3cret")
        self.alice.disconnect()
        again = FakeClient(self.host).register("alice")
        again.send("KILL bob :x")
        self.assertEqual(again.commands(), ["481"])

    def test_kill(self):
        self.bob.send("KILL alice :spam")
        self.assertEqual(
            lines(self.bob),
            [":test.host 481 bob :Permission Denied- You're not an IRC operator"],
        )
        self.alice.send("OPER root s3cret")
        self.alice.raw()
        self.alice.send("KILL nobody", "KILL bob :flooding the room")
        self.assertEqual(
            lines(self.alice), [":test.host 401 alice nobody :No such nick/channel"]
        )
        self.assertEqual(
            lines(self.bob),
            ["ERROR :Closing link: 127.0.0.1 (Killed (alice (flooding the room)))"],
        )
        self.assertTrue(self.bob.transport.disconnecting)
        self.bob.disconnect()  # the transport closes
        self.assertEqual(
            lines(self.alice),
            [":bob!~bob@127.0.0.1 QUIT :Killed (alice (flooding the room))"],
        )
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
        self.assertEqual(
            lines(self.bob), [":alice!~alice@127.0.0.1 WALLOPS :maintenance at noon"]
        )
        self.assertEqual(carol.raw(), b"")
        self.assertEqual(self.alice.raw(), b"")

    def test_user_modes(self):
        self.alice.send("MODE alice +wx", "MODE alice -o", "MODE bob +w", "MODE nobody")
        self.assertEqual(
            lines(self.alice),
            [
                ":test.host 501 alice :Unknown MODE flag",
                ":alice!~alice@127.0.0.1 MODE alice +w",
                ":test.host 502 alice :Can't change mode for other users",
                ":test.host 401 alice nobody :No such nick/channel",
            ],
        )

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
        """The file's operators reach the host that C{twistd chatroom}
        builds (L{tap.build_service}), not only the parsed options."""
        options = self.parse(self.write("# operators\nroot s3cret\n\nanna pw\n"))
        self.assertEqual(options["operators"], {"root": "s3cret", "anna": "pw"})
        service = tap.build_service(Clock(), options)
        self.addCleanup(service.store.close)
        self.assertEqual(service.host.operators, {"root": "s3cret", "anna": "pw"})

    def test_readable_by_others_refused(self):
        error = self.assertRaises(
            usage.UsageError, self.parse, self.write("root s3cret\n", 0o644)
        )
        self.assertIn("chmod 600", str(error))

    def test_malformed_line(self):
        error = self.assertRaises(usage.UsageError, self.parse, self.write("root\n"))
        self.assertIn("line 1", str(error))


class ServerQueryTests(SynchronousTestCase):
    """HELP, LINKS, bot mode, STATUSMSG and LIST filters."""

    def setUp(self):
        self.host = make_host(rooms=(), limits=Limits(flood_rate=0, open_rooms=True))
        self.alice = FakeClient(self.host).register("alice", ("message-tags",))

    def test_help(self):
        self.alice.send("HELP privmsg", "HELPOP nothing")
        self.assertEqual(
            lines(self.alice),
            [
                ":test.host 704 alice privmsg :** Help on privmsg **",
                ":test.host 705 alice privmsg :Send a message to a room, or privately "
                "to one user.",
                ":test.host 706 alice privmsg :End of /HELP",
                ":test.host 524 alice nothing :No help available on this topic",
            ],
        )
        self.alice.send("HELP")
        got = self.alice.commands()
        self.assertEqual((got[0], got[-1]), ("704", "706"))

    def test_links(self):
        self.alice.send("LINKS")
        self.assertEqual(
            lines(self.alice), [":test.host 365 alice * :End of /LINKS list"]
        )

    def test_bot_mode(self):
        bot = FakeClient(self.host).register("beep")
        bot.send("MODE beep +B", "JOIN #r")
        self.assertEqual(bot.messages()[0].params, ("beep", "+B"))
        self.alice.join("#r")
        bot.send("PRIVMSG #r :beep boop", "PRIVMSG alice :boop")
        got = self.alice.messages()
        self.assertEqual([m.tags.get("bot") for m in got], ["", ""])
        self.alice.send("WHOIS beep", "WHO #r")
        got = lines(self.alice)
        self.assertIn(":test.host 335 alice beep :is a bot on this host", got)
        self.assertIn(
            ":test.host 352 alice #r ~beep 127.0.0.1 test.host beep HB@ :0 Beep", got
        )

    def test_statusmsg(self):
        """PRIVMSG @#r reaches the operators only, +#r voiced ones too."""
        self.alice.send("JOIN #r")  # opens it: operator
        voiced = FakeClient(self.host).register("voiced").join("#r")
        plain = FakeClient(self.host).register("plain").join("#r")
        self.alice.send("MODE #r +v voiced")
        self.alice.raw(), voiced.raw(), plain.raw()
        plain.send("PRIVMSG @#r :ops only", "PRIVMSG +#r :voice too")
        self.assertEqual(
            [m.params for m in self.alice.messages()],
            [("@#r", "ops only"), ("+#r", "voice too")],
        )
        self.assertEqual(
            lines(voiced), [":plain!~plain@127.0.0.1 PRIVMSG +#r :voice too"]
        )
        self.assertEqual(plain.raw(), b"")

    def test_list_filters(self):
        self.alice.send("JOIN #chan1", "JOIN #chan2", "JOIN #other")
        FakeClient(self.host).register("bob").join("#chan2")
        # Just over 2 minutes (and before the 150 s ping timeout).
        self.host.clock.advance(125)
        self.alice.send("TOPIC #chan1 :fresh")
        self.alice.raw()

        def listed(terms):
            self.alice.send("LIST " + terms)
            return [m.params[1] for m in self.alice.messages() if m.command == "322"]

        self.assertEqual(listed("#ch*"), ["#chan1", "#chan2"])
        self.assertEqual(listed("!#ch*"), ["#other"])
        self.assertEqual(listed(">1"), ["#chan2"])
        self.assertEqual(listed("<2"), ["#chan1", "#other"])
        self.assertEqual(listed("C>2"), ["#chan1", "#chan2", "#other"])
        self.assertEqual(listed("C<2"), [])
        self.assertEqual(listed("T<2"), ["#chan1"])
        self.assertEqual(listed("#chan1,#other"), ["#chan1", "#other"])
