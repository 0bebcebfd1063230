"""LIST and room moderation (+v, +m, +b, +l, +s, +t): raw IRC lines."""

from twisted.trial.unittest import SynchronousTestCase

from chatroom.history import HistoryStore
from chatroom.host import Limits

from .fakes import FakeClient, make_host

OPEN = Limits(flood_rate=0, open_rooms=True)


def lines(client):
    """The lines written so far as text, cleared."""
    return client.raw().decode("utf-8").split("\r\n")[:-1]


class ListTests(SynchronousTestCase):
    def setUp(self):
        self.host = make_host(rooms=("lobby",), limits=OPEN)
        self.op = FakeClient(self.host).register("op")
        self.op.send(
            "JOIN #fun", "TOPIC #fun :games tonight", "JOIN #hidden", "MODE #hidden +s"
        )
        self.op.raw()
        self.other = FakeClient(self.host).register("other")

    def test_list(self):
        """Rooms in name order with member counts and topics; +s left out."""
        self.other.send("LIST")
        self.assertEqual(
            lines(self.other),
            [
                ":test.host 321 other Channel :Users  Name",
                ":test.host 322 other #fun 1 :games tonight",
                ":test.host 322 other #lobby 0 :",
                ":test.host 323 other :End of /LIST",
            ],
        )

    def test_list_secret_for_members(self):
        self.op.send("LIST #hidden,#nope")
        self.assertEqual(
            lines(self.op),
            [
                ":test.host 321 op Channel :Users  Name",
                ":test.host 322 op #hidden 1 :",
                ":test.host 323 op :End of /LIST",
            ],
        )
        self.other.send("LIST #hidden")
        self.assertEqual(self.other.commands(), ["321", "323"])

    def test_names_of_secret_room(self):
        self.other.send("NAMES #hidden")
        self.assertEqual(
            lines(self.other), [":test.host 366 other #hidden :End of /NAMES list"]
        )
        self.op.send("NAMES #hidden")
        self.assertEqual(lines(self.op)[0], ":test.host 353 op @ #hidden @op")


class ModerationTests(SynchronousTestCase):
    def setUp(self):
        self.store = HistoryStore(":memory:")
        self.host = make_host(rooms=(), limits=OPEN, store=self.store)
        self.op = FakeClient(self.host).register("op")
        self.op.send("JOIN #r")
        self.alice = FakeClient(self.host).register("alice").join("#r")
        self.op.raw()

    def test_voice_and_moderated(self):
        """Under +m only voiced members and operators speak (404 otherwise)."""
        self.op.send("MODE #r +mv alice")
        self.assertEqual(lines(self.op), [":op!~op@127.0.0.1 MODE #r +mv alice"])
        bob = FakeClient(self.host).register("bob").join("#r")
        bob.send("PRIVMSG #r :hi")
        self.assertEqual(lines(bob), [":test.host 404 bob #r :Cannot send to channel"])
        self.alice.raw()
        self.alice.send("PRIVMSG #r :voiced")
        self.assertEqual(lines(bob), [":alice!~alice@127.0.0.1 PRIVMSG #r voiced"])
        self.op.send("MODE #r -v alice")
        self.op.raw()
        self.alice.raw()
        self.alice.send("PRIVMSG #r :again")
        self.assertEqual(self.alice.commands(), ["404"])
        self.op.send("NAMES #r")
        self.assertEqual(lines(self.op)[0], ":test.host 353 op = #r :@op alice bob")

    def test_ban_keeps_out_and_silences(self):
        """+b nick!*@*: a banned member cannot speak; a banned user cannot
        join (474); the list is 367/368; -b lifts it."""
        self.op.send("MODE #r +b alice")
        self.assertEqual(lines(self.op), [":op!~op@127.0.0.1 MODE #r +b alice!*@*"])
        self.alice.raw()
        self.alice.send("PRIVMSG #r :still here?", "PART #r")
        self.assertEqual(self.alice.commands(), ["404", "PART"])
        self.alice.send("JOIN #r")
        self.assertEqual(
            lines(self.alice), [":test.host 474 alice #r :Cannot join channel (+b)"]
        )
        self.op.raw()
        self.op.send("MODE #r +b", "MODE #r b")
        when = str(self.host.now_ms() // 1000)
        self.assertEqual(
            lines(self.op),
            [
                ":test.host 367 op #r alice!*@* op!~op@127.0.0.1 " + when,
                ":test.host 368 op #r :End of channel ban list",
            ]
            * 2,
        )
        self.op.send("MODE #r -b ALICE!*@*")
        self.assertEqual(lines(self.op), [":op!~op@127.0.0.1 MODE #r -b alice!*@*"])
        self.alice.send("JOIN #r")
        self.assertEqual(self.alice.commands()[0], "JOIN")

    def test_ban_masks(self):
        self.op.send("MODE #r +b *!*@127.0.0.*")
        carol = FakeClient(self.host).register("carol")
        carol.send("JOIN #r")
        self.assertEqual(carol.commands(), ["474"])
        # An invitation lets a banned user in (as Ergo).
        self.op.send("INVITE carol #r")
        carol.raw()
        carol.send("JOIN #r")
        self.assertEqual(carol.commands()[0], "JOIN")

    def test_limit(self):
        self.op.send("MODE #r +l 2")
        self.assertEqual(lines(self.op), [":op!~op@127.0.0.1 MODE #r +l 2"])
        bob = FakeClient(self.host).register("bob")
        bob.send("JOIN #r")
        self.assertEqual(
            lines(bob), [":test.host 471 bob #r :Cannot join channel (+l)"]
        )
        self.op.send("MODE #r", "MODE #r +l x", "MODE #r -l")
        got = lines(self.op)
        self.assertEqual(got[0], ":test.host 324 op #r +nl 2")
        self.assertEqual(
            got[2], ":test.host 696 op #r l x :Invalid limit: a positive whole number"
        )
        self.assertEqual(got[3], ":op!~op@127.0.0.1 MODE #r -l")
        bob.send("JOIN #r")
        self.assertEqual(bob.commands()[0], "JOIN")

    def test_mode_changes_capped(self):
        """MODES=4: a fifth change with a parameter is ignored."""
        for nick in ("a1", "a2", "a3", "a4", "a5"):
            FakeClient(self.host).register(nick).join("#r")
        self.op.raw()
        self.op.send("MODE #r +vvvvv a1 a2 a3 a4 a5")
        self.assertEqual(
            lines(self.op), [":op!~op@127.0.0.1 MODE #r +vvvv a1 a2 a3 a4"]
        )

    def test_topic_lock_needs_op(self):
        self.op.send("MODE #r +t")
        self.op.raw()
        self.alice.raw()
        self.alice.send("TOPIC #r :mine")
        self.assertEqual(
            lines(self.alice), [":test.host 482 alice #r :You're not channel operator"]
        )
        self.op.send("MODE #r -t")
        self.alice.raw()
        self.alice.send("TOPIC #r :mine")
        self.assertEqual(self.alice.commands(), ["TOPIC"])

    def test_modes_survive_restart(self):
        """+imst, the limit and the ban list are stored with the room."""
        self.op.send("MODE #r +imstl 5", "MODE #r +b bad!*@*")
        host = make_host(rooms=(), limits=OPEN, store=self.store)
        room = host.find_room("#r")
        self.assertEqual(room.modes, set("imnst"))
        self.assertEqual(room.limit, 5)
        self.assertEqual([ban.mask for ban in room.bans], ["bad!*@*"])
        self.assertEqual(room.bans[0].setter, "op!~op@127.0.0.1")

    def test_no_external_messages(self):
        """Rooms start +n; -n lets outsiders post (and get their echo)."""
        outsider = FakeClient(self.host).register("out", ("echo-message",))
        outsider.send("PRIVMSG #r :knock")
        self.assertEqual(outsider.commands(), ["404"])
        self.op.send("MODE #r -n")
        self.assertEqual(lines(self.op), [":op!~op@127.0.0.1 MODE #r -n"])
        outsider.send("PRIVMSG #r :knock")
        self.assertEqual(lines(self.op), [":out!~out@127.0.0.1 PRIVMSG #r knock"])
        self.assertEqual(outsider.commands(), ["PRIVMSG"])

    def test_voice_unknown_nick(self):
        """+v of a nick nobody uses is 401; of a non-member 441."""
        FakeClient(self.host).register("elsewhere")
        self.op.send("MODE #r +v nobody", "MODE #r +v elsewhere")
        self.assertEqual(self.op.commands(), ["401", "441"])

    def test_ban_list_full(self):
        self.op.send(*["MODE #r +b m%d" % (n,) for n in range(61)])
        self.assertIn(
            ":test.host 478 op #r m60 :Channel ban list is full", lines(self.op)
        )
        self.assertEqual(len(self.host.find_room("#r").bans), 60)


class MoreModeTests(SynchronousTestCase):
    """+C, invitations past +l, the invitation list."""

    def setUp(self):
        self.host = make_host(rooms=(), limits=OPEN)
        self.op = FakeClient(self.host).register("op")
        self.op.send("JOIN #r")
        self.user = FakeClient(self.host).register("user").join("#r")
        self.op.raw()

    def test_no_ctcp(self):
        self.op.send("MODE #r +C")
        self.op.raw()
        self.user.raw()
        self.user.send("PRIVMSG #r :\x01ACTION waves\x01", "PRIVMSG #r :\x01PING 1\x01")
        self.assertEqual(
            lines(self.user), [":test.host 404 user #r :Cannot send to channel"]
        )
        self.assertEqual(
            [m.params[1] for m in self.op.messages()], ["\x01ACTION waves\x01"]
        )

    def test_invitation_passes_limit_and_is_listed(self):
        self.op.send("MODE #r +l 2")
        guest = FakeClient(self.host).register("guest")
        self.op.send("INVITE guest #r")
        guest.raw()
        guest.send("INVITE")
        self.assertEqual(
            lines(guest),
            [":test.host 336 guest #r", ":test.host 337 guest :End of /INVITE list"],
        )
        guest.send("JOIN #r", "INVITE")
        self.assertEqual(guest.commands(), ["JOIN", "353", "366", "337"])
        self.op.send("INVITE guest")
        self.assertIn("461", self.op.commands())


class MultiTargetTests(SynchronousTestCase):
    def setUp(self):
        self.host = make_host(rooms=(), limits=OPEN)
        self.op = FakeClient(self.host).register("op")
        self.op.send("JOIN #a", "JOIN #b")
        self.op.raw()

    def test_names_of_several_rooms_one_end(self):
        self.op.send("NAMES #a,#b,#nope")
        self.assertEqual(
            lines(self.op),
            [
                ":test.host 353 op = #a @op",
                ":test.host 353 op = #b @op",
                ":test.host 366 op #a,#b,#nope :End of /NAMES list",
            ],
        )

    def test_kick_pairs_rooms_and_nicks(self):
        bar = FakeClient(self.host).register("bar").join("#a").join("#b")
        baz = FakeClient(self.host).register("baz").join("#a")
        self.op.raw()
        self.op.send("KICK #a,#b bar,bar :bye", "KICK #a baz,nobody")
        self.assertEqual(
            lines(self.op),
            [
                ":op!~op@127.0.0.1 KICK #a bar bye",
                ":op!~op@127.0.0.1 KICK #b bar bye",
                ":op!~op@127.0.0.1 KICK #a baz op",
                ":test.host 441 op nobody #a :They aren't on that channel",
            ],
        )
        self.assertTrue(baz.protocol.registered and bar.protocol.registered)
        self.op.send("KICK #a,#b x")
        self.assertEqual(self.op.commands(), ["461"])
