"""The behaviour list of issue 11, one test per item, raw lines in and out."""

from twisted.trial.unittest import SynchronousTestCase

from chatroom.core.ircline import MAX_IRC_BYTES
from chatroom.host import Limits

from .fakes import FakeClient, make_host

NO_FLOOD = Limits(flood_rate=0)
OPEN = Limits(flood_rate=0, open_rooms=True)


def lines(client):
    """The lines written so far as text, cleared."""
    return client.raw().decode("utf-8").split("\r\n")[:-1]


class TargetTests(SynchronousTestCase):
    """Several targets, TARGMAX, a message to oneself."""

    def setUp(self):
        self.host = make_host(rooms=("a", "b", "c", "d", "e"), limits=NO_FLOOD)
        self.alice = FakeClient(self.host).register("alice")
        self.bob = FakeClient(self.host).register("bob")
        for room in ("#a", "#b", "#c", "#d", "#e"):
            self.alice.join(room)
            self.bob.join(room)
        self.alice.raw()

    def test_each_distinct_target_once(self):
        """A room named twice (in any case) gets one message, one event."""
        next_seq = self.host.find_room("#a").next_seq
        self.bob.send("PRIVMSG #a,#A,#b :x", "PRIVMSG alice,ALICE :y")
        self.assertEqual(
            lines(self.alice),
            [
                ":bob!~bob@127.0.0.1 PRIVMSG #a x",
                ":bob!~bob@127.0.0.1 PRIVMSG #b x",
                ":bob!~bob@127.0.0.1 PRIVMSG alice y",
            ],
        )
        self.assertEqual(self.host.find_room("#a").next_seq, next_seq + 1)

    def test_too_many_targets(self):
        """Beyond TARGMAX (4): 407 once, the first four still delivered."""
        self.bob.send("PRIVMSG #a,#b,#c,#d,#e :x")
        self.assertEqual(
            lines(self.bob),
            [
                ":test.host 407 bob #e :Too many targets; message not delivered "
                "to #e and later ones"
            ],
        )
        self.assertEqual(len(lines(self.alice)), 4)

    def test_message_to_own_nick(self):
        self.alice.send("PRIVMSG alice :note to self")
        self.assertEqual(
            lines(self.alice), [":alice!~alice@127.0.0.1 PRIVMSG alice :note to self"]
        )
        echo = FakeClient(self.host).register("echo", ("echo-message",))
        echo.send("PRIVMSG echo :twice")
        self.assertEqual(lines(echo), [":echo!~echo@127.0.0.1 PRIVMSG echo twice"] * 2)


class MessageTagTests(SynchronousTestCase):
    def setUp(self):
        self.host = make_host(limits=NO_FLOOD)
        self.tagged = FakeClient(self.host).register("tagged", ("message-tags",)).join()
        self.plain = FakeClient(self.host).register("plain").join()
        self.tagged.raw()

    def test_msgid_on_private_messages_notices_tagmsg(self):
        other = FakeClient(self.host).register("other", ("message-tags",)).join()
        self.tagged.raw()
        other.send(
            "PRIVMSG tagged :a", "NOTICE tagged :b", "@+typing=active TAGMSG tagged"
        )
        got = self.tagged.messages()
        self.assertEqual([m.command for m in got], ["PRIVMSG", "NOTICE", "TAGMSG"])
        ids = [m.tags["msgid"] for m in got]
        self.assertEqual(len(set(ids)), 3)
        other.send("@+typing=active TAGMSG #lobby")
        (room_tagmsg,) = self.tagged.messages()
        self.assertIn("msgid", room_tagmsg.tags)

    def test_tagmsg_only_to_message_tags_recipients(self):
        self.tagged.send(
            "@+typing=active TAGMSG plain", "@+typing=active TAGMSG #lobby"
        )
        self.assertEqual(self.plain.raw(), b"")

    def test_tagmsg_from_sender_without_message_tags(self):
        self.plain.send("@+typing=active TAGMSG #lobby")
        self.assertEqual(self.tagged.raw(), b"")

    def test_client_tags_dropped_without_message_tags(self):
        self.plain.send("@+draft/react=x PRIVMSG #lobby :hi")
        (got,) = self.tagged.messages()
        self.assertEqual(set(got.tags), {"msgid"})

    def test_tag_section_limit(self):
        """4094 bytes of tag data pass; 4095 get 417 and are not relayed."""
        fits = "+a=" + "x" * (4094 - 3)
        self.tagged.send("@%s PRIVMSG #lobby :ok" % (fits,))
        self.assertEqual(self.plain.commands(), ["PRIVMSG"])
        self.tagged.send("@%s PRIVMSG #lobby :no" % (fits + "x",))
        self.assertEqual(self.tagged.commands(), ["417"])
        self.assertEqual(self.plain.raw(), b"")

    def test_label_over_64_bytes_refused(self):
        client = FakeClient(self.host).register("l", ("labeled-response", "batch"))
        client.send("@label=%s PRIVMSG #lobby :x" % ("a" * 65,))
        self.assertEqual(
            lines(client),
            [":test.host FAIL PRIVMSG INVALID_LABEL :Labels are at most 64 bytes"],
        )
        self.assertEqual(self.plain.raw(), b"")
        client.send("@label=%s PING x" % ("a" * 64,))
        self.assertEqual(client.messages()[0].tags["label"], "a" * 64)


class LabeledResponseTests(SynchronousTestCase):
    """Commands with several replies answer in one labelled batch."""

    def setUp(self):
        self.host = make_host(rooms=("a", "b"), limits=NO_FLOOD)
        self.client = FakeClient(self.host).register(
            "alice", ("labeled-response", "batch", "echo-message", "message-tags")
        )

    def batch(self, line):
        self.client.send(line)
        got = self.client.messages()
        start, body, end = got[0], got[1:-1], got[-1]
        self.assertEqual((start.command, start.tags["label"]), ("BATCH", "L"))
        self.assertEqual(start.params[1], "labeled-response")
        ref = start.params[0][1:]
        self.assertEqual((end.command, end.params), ("BATCH", ("-" + ref,)))
        for message in body:
            self.assertEqual(message.tags.get("batch"), ref, message)
            self.assertNotIn("label", message.tags)
        return [m.command for m in body]

    def test_join_several_one_invalid(self):
        self.assertEqual(
            self.batch("@label=L JOIN #a,#nope,#b"),
            ["JOIN", "353", "366", "403", "JOIN", "353", "366"],
        )

    def test_join_zero(self):
        self.client.join("#a").join("#b")
        self.assertEqual(self.batch("@label=L JOIN 0"), ["PART", "PART"])

    def test_privmsg_several_targets_echo(self):
        self.client.join("#a").join("#b")
        self.assertEqual(
            self.batch("@label=L PRIVMSG #a,#b :x"), ["PRIVMSG", "PRIVMSG"]
        )

    def test_error_numeric_single_line(self):
        self.client.send("@label=L FROB")
        (reply,) = self.client.messages()
        self.assertEqual((reply.command, reply.tags), ("421", {"label": "L"}))

    def test_each_tag_key_once(self):
        self.client.join("#a")
        self.client.send("@label=L PRIVMSG #a :x")
        raw = self.client.raw().split(b" ", 1)[0]
        keys = [tag.split(b"=")[0] for tag in raw[1:].split(b";")]
        self.assertEqual(len(keys), len(set(keys)), raw)


class RegistrationTests(SynchronousTestCase):
    def setUp(self):
        self.host = make_host(limits=NO_FLOOD)

    def test_user_with_empty_realname(self):
        client = FakeClient(self.host)
        client.send("NICK a", "USER a 0 * :")
        self.assertEqual(
            lines(client), [":test.host 461 a USER :Not enough parameters"]
        )
        self.assertFalse(client.protocol.registered)

    def test_bang_and_at_stripped_from_user_name(self):
        client = FakeClient(self.host)
        client.send("NICK a", "USER x@fake.host!y 0 * :A")
        self.assertEqual(client.protocol.source, "a!~xfake.host@127.0.0.1")

    def test_no_reply_longer_than_linelen(self):
        """Long fields users control (real name, topic, away, message) never
        make a line the host sends exceed LINELEN (512 with CR LF)."""
        host = make_host(rooms=(), limits=OPEN)
        long = "é" * 250  # 500 bytes
        alice = FakeClient(host)
        alice.send("NICK " + "a" * 30, "USER u 0 * :" + long)
        bob = FakeClient(host).register("b" * 30)
        alice.send(
            "JOIN #" + "r" * 32,
            "TOPIC #%s :%s" % ("r" * 32, long),
            "AWAY :" + long,
            "PRIVMSG #%s :%s" % ("r" * 32, long),
        )
        bob.send(
            "JOIN #" + "r" * 32,
            "WHOIS " + "a" * 30,
            "WHO #" + "r" * 32,
            "LIST",
            "PRIVMSG %s :hi" % ("a" * 30,),
            "CHATHISTORY LATEST #%s * 10" % ("r" * 32,),
        )
        for client in (alice, bob):
            for line in client.raw().split(b"\r\n")[:-1]:
                self.assertLessEqual(len(line) + 2, MAX_IRC_BYTES, line)
                line.decode("utf-8")  # cut at a character boundary


class KeyTests(SynchronousTestCase):
    def setUp(self):
        self.host = make_host(rooms=(), limits=OPEN)
        self.op = FakeClient(self.host).register("op")
        self.op.send("JOIN #r")
        self.op.raw()

    def test_bad_keys_refused(self):
        self.op.send(
            "MODE #r +k :",
            "MODE #r +k :a b",
            "MODE #r +k a,b",
            "MODE #r +k " + "x" * 24,
        )
        self.assertEqual(
            lines(self.op),
            [
                ":test.host 696 op #r k * :Invalid key: 1 to 23 characters, "
                "no space or comma"
            ]
            * 4,
        )
        self.op.send("MODE #r")
        self.assertEqual(self.op.messages()[0].params[2], "+n")
        self.assertEqual(self.host.store.room_record("r").channel_key, "")


class GrantTests(SynchronousTestCase):
    """Invitations and operator status belong to the connection."""

    def setUp(self):
        self.host = make_host(rooms=(), limits=OPEN)
        self.op = FakeClient(self.host).register("op")
        self.op.send("JOIN #r", "MODE #r +i")

    def test_invitation_not_inherited_by_nick(self):
        guest = FakeClient(self.host).register("guest")
        self.op.send("INVITE guest #r")
        guest.disconnect()
        impostor = FakeClient(self.host).register("guest")
        impostor.send("JOIN #r")
        self.assertEqual(impostor.commands(), ["473"])

    def test_invitation_follows_nick_change(self):
        guest = FakeClient(self.host).register("guest")
        self.op.send("INVITE guest #r")
        guest.send("NICK visitor", "JOIN #r")
        self.assertIn("JOIN", guest.commands())

    def test_operator_not_inherited_by_nick(self):
        self.op.send("MODE #r -i")
        keeper = FakeClient(self.host).register("keeper").join("#r")
        self.op.disconnect()
        impostor = FakeClient(self.host).register("op").join("#r")
        impostor.send("MODE #r +t")
        self.assertEqual(impostor.commands(), ["482"])
        self.assertFalse(self.host.find_room("#r").is_operator(keeper.protocol))


class ChatHistoryRuleTests(SynchronousTestCase):
    def setUp(self):
        self.host = make_host(rooms=(), limits=OPEN)
        self.op = FakeClient(self.host).register("op")
        self.op.send(
            "JOIN #r", "PRIVMSG #r :one", "PRIVMSG #r :two", "PRIVMSG #r :three"
        )
        self.op.raw()
        self.outsider = FakeClient(self.host).register("out", ("batch",))

    def fail(self, client, line):
        client.send(line)
        (reply,) = client.messages()
        self.assertEqual(reply.command, "FAIL")
        return reply.params[:2]

    def test_no_history_of_closed_rooms_for_non_members(self):
        self.outsider.send("CHATHISTORY LATEST #r * 10")
        self.assertEqual(len(self.outsider.messages()), 5)  # open room: allowed
        for mode in ("+i", "-i", "+k key", "-k", "+s"):
            self.op.send("MODE #r " + mode)
            if mode.startswith("-"):
                continue
            self.assertEqual(
                self.fail(self.outsider, "CHATHISTORY LATEST #r * 10"),
                ("CHATHISTORY", "INVALID_TARGET"),
                mode,
            )

    def test_numbers_that_do_not_fit(self):
        self.assertEqual(
            self.fail(self.op, "CHATHISTORY BEFORE #r msgid=r:99999999999999999999 10"),
            ("CHATHISTORY", "INVALID_PARAMS"),
        )
        self.op.send("CHATHISTORY LATEST #r * 99999999999999999999999")
        self.assertEqual(self.op.commands().count("PRIVMSG"), 3)
        self.assertEqual(
            self.fail(self.op, "CHATHISTORY LATEST #r * -1"),
            ("CHATHISTORY", "INVALID_PARAMS"),
        )
        self.assertEqual(self.host.counters.get("internal-errors", 0), 0)

    def test_around_limit_one_is_the_message(self):
        self.op.send("CHATHISTORY AROUND #r msgid=r:3 1")
        (message,) = self.op.messages()
        self.assertEqual(message.params, ("#r", "two"))

    def test_timestamp_with_offset_and_z_refused(self):
        self.assertEqual(
            self.fail(
                self.op,
                "CHATHISTORY BEFORE #r timestamp=2025-11-24T16:00:00.000+01:00Z 5",
            ),
            ("CHATHISTORY", "INVALID_PARAMS"),
        )


class ReplyOrderTests(SynchronousTestCase):
    def test_answers_in_command_order(self):
        """Commands read together are answered in order: the PONG does not
        overtake the JOIN's names or the MODE event (irctest syncs on it)."""
        host = make_host(rooms=(), limits=OPEN)
        client = FakeClient(host).register("nick1")
        client.protocol.dataReceived(b"JOIN #chan\r\nMODE #chan +s\r\nPING :sync\r\n")
        self.assertEqual(client.raw(), b"")  # nothing before the commit
        host.clock.advance(0)
        # Events of one turn go out together, before the replies that
        # follow them (so the names may come after the MODE); the PONG of
        # the last command is last.
        self.assertEqual(client.commands(), ["JOIN", "MODE", "353", "366", "PONG"])
