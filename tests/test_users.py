"""WHOIS, WHOWAS, ISON, USERHOST, LUSERS, VERSION, TIME, AWAY: raw lines."""

from twisted.trial.unittest import SynchronousTestCase

from chatroom import __version__
from chatroom.host import Limits

from .fakes import FakeClient, make_host

NO_FLOOD = Limits(flood_rate=0, whowas_entries=3)


def lines(client):
    """The lines written so far as text, cleared."""
    return client.raw().decode("utf-8").split("\r\n")[:-1]


class WhoisTests(SynchronousTestCase):
    def setUp(self):
        self.host = make_host(rooms=("lobby", "dev"), limits=NO_FLOOD)
        self.alice = FakeClient(self.host).register("alice")
        self.bob = FakeClient(self.host).register("bob")

    def test_whois(self):
        """311, 319, 312, 317, 318 in that order, with the right values."""
        self.bob.join("#lobby").join("#dev")
        self.host.clock.advance(42)
        self.alice.send("WHOIS bob")
        signon = str(1764000000)
        self.assertEqual(
            lines(self.alice),
            [
                ":test.host 311 alice bob ~bob 127.0.0.1 * Bob",
                ":test.host 319 alice bob :#lobby #dev",
                ":test.host 312 alice bob test.host :chatroom host",
                ":test.host 317 alice bob 42 %s :seconds idle, signon time" % (signon,),
                ":test.host 318 alice bob :End of /WHOIS list",
            ],
        )

    def test_whois_server_form_and_unknown(self):
        """WHOIS server nick; an unknown nick gets 401 then 318."""
        self.alice.send("WHOIS test.host nobody")
        self.assertEqual(
            lines(self.alice),
            [
                ":test.host 401 alice nobody :No such nick/channel",
                ":test.host 318 alice nobody :End of /WHOIS list",
            ],
        )
        self.alice.send("WHOIS")
        self.assertEqual(self.alice.commands(), ["461"])

    def test_whois_away_and_prefix(self):
        self.bob.join("#lobby")
        self.bob.send("AWAY :lunch")
        self.alice.send("WHOIS bob")
        got = lines(self.alice)
        self.assertIn(":test.host 301 alice bob lunch", got)
        # The first joiner of a --room room is no operator: no prefix.
        self.assertIn(":test.host 319 alice bob #lobby", got)

    def test_whois_hides_secret_rooms(self):
        """A +s room is shown only to who shares it."""
        host = make_host(rooms=(), limits=Limits(flood_rate=0, open_rooms=True))
        op = FakeClient(host).register("op")
        other = FakeClient(host).register("other")
        op.send("JOIN #hidden", "MODE #hidden +s")
        op.raw()
        other.send("WHOIS op")
        self.assertNotIn("319", other.commands())
        other.join("#hidden")
        other.send("WHOIS op")
        self.assertIn(":test.host 319 other op @#hidden", lines(other))


class WhowasTests(SynchronousTestCase):
    def setUp(self):
        self.host = make_host(limits=NO_FLOOD)
        self.alice = FakeClient(self.host).register("alice")

    def test_whowas_after_quit(self):
        bob = FakeClient(self.host).register("bob")
        self.host.clock.advance(10)
        bob.disconnect()
        self.alice.send("WHOWAS bob")
        self.assertEqual(
            lines(self.alice),
            [
                ":test.host 314 alice bob ~bob 127.0.0.1 * Bob",
                ":test.host 312 alice bob test.host :Mon, 24 Nov 2025 16:00:10 UTC",
                ":test.host 369 alice bob :End of WHOWAS",
            ],
        )

    def test_whowas_after_nick_change_and_unknown(self):
        bob = FakeClient(self.host).register("bob")
        bob.send("NICK robert")
        self.alice.send("WHOWAS bob", "WHOWAS robert")
        self.assertEqual(self.alice.commands(), ["314", "312", "369", "406", "369"])

    def test_whowas_is_bounded(self):
        """Only the newest whowas_entries (3 here) are remembered."""
        for name in ("u1", "u2", "u3", "u4"):
            FakeClient(self.host).register(name).disconnect()
        self.alice.send("WHOWAS u1", "WHOWAS u4")
        self.assertEqual(self.alice.commands(), ["406", "369", "314", "312", "369"])

    def test_whowas_count(self):
        for _ in range(3):
            FakeClient(self.host).register("bob").disconnect()
        self.alice.send("WHOWAS bob 2")
        self.assertEqual(self.alice.commands().count("314"), 2)


class LookupTests(SynchronousTestCase):
    def setUp(self):
        self.host = make_host(limits=NO_FLOOD)
        self.alice = FakeClient(self.host).register("alice")
        self.bob = FakeClient(self.host).register("Bob")

    def test_ison(self):
        self.alice.send("ISON bob nobody alice", "ISON :bob carol")
        self.assertEqual(
            lines(self.alice),
            [
                ":test.host 303 alice :Bob alice",
                ":test.host 303 alice Bob",
            ],
        )

    def test_userhost(self):
        self.bob.send("AWAY :gone")
        self.alice.send("USERHOST bob alice nobody")
        self.assertEqual(
            lines(self.alice),
            [
                ":test.host 302 alice :Bob=-~Bob@127.0.0.1 alice=+~alice@127.0.0.1",
            ],
        )

    def test_lusers(self):
        FakeClient(self.host)  # connected, not registered
        self.alice.send("LUSERS")
        self.assertEqual(
            lines(self.alice),
            [
                ":test.host 251 alice :There are 0 users and 2 invisible on 1 servers",
                ":test.host 252 alice 0 :IRC Operators online",
                ":test.host 253 alice 1 :unregistered connections",
                ":test.host 254 alice 1 :channels formed",
                ":test.host 255 alice :I have 2 clients and 0 servers",
                ":test.host 265 alice 2 2 :Current local users 2, max 2",
                ":test.host 266 alice 2 2 :Current global users 2, max 2",
            ],
        )

    def test_version_and_time(self):
        self.alice.send("VERSION", "TIME")
        got = lines(self.alice)
        self.assertEqual(
            got[0],
            ":test.host 351 alice chatroom-%s test.host "
            ":chatroom rooms over IRC" % (__version__,),
        )
        self.assertEqual([line.split()[1] for line in got[1:]], ["005", "005", "391"])
        self.assertEqual(
            got[-1], ":test.host 391 alice test.host :Mon, 24 Nov 2025 16:00:00 UTC"
        )


class AwayTests(SynchronousTestCase):
    def setUp(self):
        self.host = make_host(limits=NO_FLOOD)
        self.alice = FakeClient(self.host).register("alice", ("away-notify",))
        self.bob = FakeClient(self.host).register("bob")
        self.carol = FakeClient(self.host).register("carol")
        for client in (self.alice, self.bob, self.carol):
            client.join()
        for client in (self.alice, self.bob, self.carol):
            client.raw()

    def test_away_numerics_and_notify(self):
        """306/305 to the sender; AWAY lines only to away-notify members."""
        self.bob.send("AWAY :out for lunch")
        self.assertEqual(
            lines(self.bob), [":test.host 306 bob :You have been marked as being away"]
        )
        self.assertEqual(lines(self.alice), [":bob!~bob@127.0.0.1 AWAY :out for lunch"])
        self.assertEqual(self.carol.raw(), b"")
        self.bob.send("AWAY")
        self.assertEqual(
            lines(self.bob),
            [":test.host 305 bob :You are no longer marked as being away"],
        )
        self.assertEqual(lines(self.alice), [":bob!~bob@127.0.0.1 AWAY"])

    def test_privmsg_to_away_user_gets_301(self):
        self.bob.send("AWAY :brb")
        self.carol.send("PRIVMSG bob :hi", "NOTICE bob :hi")
        self.assertEqual(lines(self.carol), [":test.host 301 carol bob brb"])

    def test_who_mask(self):
        """A mask matches the asker and who shares a room with it (everyone
        is +i); an exact nick is always answered; 315 echoes the mask."""
        loner = FakeClient(self.host).register("bobby")
        self.carol.send("WHO bo*")
        got = self.carol.messages()
        self.assertEqual([m.params[5] for m in got[:-1]], ["bob"])
        self.assertEqual(got[-1].params[1:], ("bo*", "End of /WHO list"))
        self.carol.send("WHO *")
        self.assertEqual(len(self.carol.messages()), 4)
        self.carol.send("WHO bobby")
        self.assertEqual(self.carol.messages()[0].params[5], "bobby")
        self.assertTrue(loner.protocol.registered)

    def test_who_shows_gone(self):
        self.bob.send("AWAY :brb")
        self.carol.send("WHO bob")
        self.assertEqual(self.carol.messages()[0].params[6], "G")


class CapabilityTests(SynchronousTestCase):
    """multi-prefix, userhost-in-names, extended-join, invite-notify,
    setname, away-notify on join, and CAP REQ refused whole."""

    def setUp(self):
        self.host = make_host(rooms=(), limits=Limits(flood_rate=0, open_rooms=True))

    def test_cap_req_naks_whole(self):
        client = FakeClient(self.host)
        for request in ("multi-prefix sasl", "--batch", "batch=1", "-", ""):
            client.send("CAP REQ :" + request)
            (nak,) = client.messages()
            self.assertEqual(nak.params[1:], ("NAK", request), request)
        self.assertEqual(client.protocol.caps, set())
        client.send(
            "CAP REQ :multi-prefix userhost-in-names cap-notify "
            "extended-join invite-notify setname away-notify"
        )
        (ack,) = client.messages()
        self.assertEqual(ack.params[1], "ACK")
        self.assertEqual(len(client.protocol.caps), 7)

    def test_multi_prefix_and_userhost_in_names(self):
        op = FakeClient(self.host).register("op")
        op.send("JOIN #r", "MODE #r +v op")
        op.raw()
        plain = FakeClient(self.host).register("plain").join("#r")
        multi = (
            FakeClient(self.host)
            .register("multi", ("multi-prefix", "userhost-in-names"))
            .join("#r")
        )
        plain.raw()
        plain.send("NAMES #r")
        multi.send("NAMES #r")
        self.assertEqual(plain.messages()[0].params[3], "@op plain multi")
        self.assertEqual(
            multi.messages()[0].params[3],
            "@+op!~op@127.0.0.1 plain!~plain@127.0.0.1 multi!~multi@127.0.0.1",
        )
        multi.send("WHO #r")
        self.assertEqual(multi.messages()[0].params[6], "H@+")
        plain.send("WHO #r")
        self.assertEqual(plain.messages()[0].params[6], "H@")

    def test_extended_join(self):
        """Members with extended-join see account * and real name; the
        others the plain JOIN; each variant's line is made once."""
        ext = FakeClient(self.host).register("ext", ("extended-join",)).join("#r")
        ext2 = FakeClient(self.host).register("ext2", ("extended-join",)).join("#r")
        plain = FakeClient(self.host).register("plain").join("#r")
        ext.raw()
        ext2.raw()
        FakeClient(self.host).register("newbie").join("#r")
        self.assertEqual(lines(ext), [":newbie!~newbie@127.0.0.1 JOIN #r * Newbie"])
        self.assertEqual(lines(ext2), [":newbie!~newbie@127.0.0.1 JOIN #r * Newbie"])
        self.assertEqual(lines(plain), [":newbie!~newbie@127.0.0.1 JOIN #r"])

    def test_invite_notify(self):
        op = FakeClient(self.host).register("op", ("invite-notify",))
        op.send("JOIN #r")
        watcher = FakeClient(self.host).register("w", ("invite-notify",)).join("#r")
        plain = FakeClient(self.host).register("plain").join("#r")
        guest = FakeClient(self.host).register("guest")
        op.raw()
        watcher.raw()
        plain.send("INVITE guest #r")
        self.assertEqual(lines(watcher), [":plain!~plain@127.0.0.1 INVITE guest #r"])
        self.assertEqual(lines(op), [":plain!~plain@127.0.0.1 INVITE guest #r"])
        self.assertEqual(lines(guest), [":plain!~plain@127.0.0.1 INVITE guest #r"])
        # In a +i room only operators are told.
        op.send("MODE #r +i")
        op.raw(), watcher.raw(), plain.raw()
        other = FakeClient(self.host).register("other")
        op.send("INVITE other #r")
        self.assertEqual(watcher.raw(), b"")
        self.assertEqual(other.commands(), ["INVITE"])

    def test_setname(self):
        alice = FakeClient(self.host).register("alice", ("setname",)).join("#r")
        bob = FakeClient(self.host).register("bob", ("setname",)).join("#r")
        carol = FakeClient(self.host).register("carol").join("#r")
        alice.raw()
        bob.raw()
        alice.send("SETNAME :Alice Liddell")
        self.assertEqual(
            lines(alice), [":alice!~alice@127.0.0.1 SETNAME :Alice Liddell"]
        )
        self.assertEqual(lines(bob), [":alice!~alice@127.0.0.1 SETNAME :Alice Liddell"])
        self.assertEqual(carol.raw(), b"")
        carol.send("WHOIS alice")
        self.assertEqual(carol.messages()[0].params[-1], "Alice Liddell")
        alice.send("SETNAME :" + "x" * 151)
        self.assertEqual(
            alice.messages()[0].params[:2], ("SETNAME", "INVALID_REALNAME")
        )

    def test_away_notify_on_join(self):
        watcher = FakeClient(self.host).register("w", ("away-notify",)).join("#r")
        away = FakeClient(self.host).register("away")
        away.send("AWAY :zzz")
        watcher.raw()
        away.join("#r")
        self.assertEqual(
            lines(watcher),
            [":away!~away@127.0.0.1 JOIN #r", ":away!~away@127.0.0.1 AWAY zzz"],
        )


class MonitorTests(SynchronousTestCase):
    def setUp(self):
        self.host = make_host(limits=Limits(flood_rate=0, monitor_entries=3))
        self.watcher = FakeClient(self.host).register("watcher")

    def test_add_status_and_notifications(self):
        FakeClient(self.host).register("bar")
        self.watcher.send("MONITOR + bar,baz")
        self.assertEqual(
            lines(self.watcher),
            [
                ":test.host 730 watcher bar!~bar@127.0.0.1",
                ":test.host 731 watcher baz",
            ],
        )
        baz = FakeClient(self.host).register("baz")
        self.assertEqual(
            lines(self.watcher), [":test.host 730 watcher baz!~baz@127.0.0.1"]
        )
        baz.send("NICK BAZ")
        self.assertEqual(self.watcher.raw(), b"")
        baz.send("NICK other")
        self.assertEqual(lines(self.watcher), [":test.host 731 watcher BAZ"])
        self.watcher.send("MONITOR - bar")
        FakeClient(self.host).register("bar2").disconnect()
        self.watcher.send("MONITOR L", "MONITOR S")
        self.assertEqual(
            lines(self.watcher),
            [
                ":test.host 732 watcher baz",
                ":test.host 733 watcher :End of MONITOR list",
                ":test.host 731 watcher baz",
            ],
        )

    def test_quit_and_clear(self):
        bar = FakeClient(self.host).register("bar")
        self.watcher.send("MONITOR + bar")
        self.watcher.raw()
        bar.disconnect()
        self.assertEqual(lines(self.watcher), [":test.host 731 watcher bar"])
        self.watcher.send("MONITOR C", "MONITOR L")
        self.assertEqual(self.watcher.commands(), ["733"])
        self.assertEqual(self.host._watchers, {})

    def test_list_full(self):
        self.watcher.send("MONITOR + a,b,c,d,e")
        got = lines(self.watcher)
        self.assertEqual(got[-1], ":test.host 734 watcher 3 d,e :Monitor list is full")

    def test_gone_watcher_forgotten(self):
        self.watcher.send("MONITOR + bar")
        self.watcher.disconnect()
        self.assertEqual(self.host._watchers, {})

    def test_extended_monitor(self):
        """With extended-monitor, AWAY of a monitored user arrives without
        sharing a room."""
        ext = FakeClient(self.host).register("ext", ("extended-monitor", "away-notify"))
        bar = FakeClient(self.host).register("bar")
        ext.send("MONITOR + bar")
        ext.raw()
        bar.send("AWAY :out")
        self.assertEqual(lines(ext), [":bar!~bar@127.0.0.1 AWAY out"])
        self.assertEqual(self.watcher.raw(), b"")


class WhoxTests(SynchronousTestCase):
    def test_whox_fields_in_fixed_order(self):
        host = make_host(limits=NO_FLOOD)
        cool = FakeClient(host).register("cool").join()
        other = FakeClient(host).register("other").join()
        cool.send("AWAY :x")
        other.send("WHO cool %rolnfdahsiuct,123", "WHO #lobby %tn,7", "WHO cool %r")
        self.assertEqual(
            lines(other),
            [
                ":test.host 354 other 123 * ~cool 127.0.0.1 127.0.0.1 test.host cool "
                "G 0 0 0 n/a Cool",
                ":test.host 315 other cool :End of /WHO list",
                ":test.host 354 other 7 cool",
                ":test.host 354 other 7 other",
                ":test.host 315 other #lobby :End of /WHO list",
                ":test.host 354 other Cool",
                ":test.host 315 other cool :End of /WHO list",
            ],
        )


class ReadMarkerTests(SynchronousTestCase):
    def setUp(self):
        self.host = make_host(limits=NO_FLOOD)
        self.alice = FakeClient(self.host).register("alice", ("draft/read-marker",))

    def test_get_set_never_back(self):
        self.alice.send(
            "MARKREAD #lobby",
            "MARKREAD #lobby timestamp=2019-06-01T12:00:00.000Z",
            "MARKREAD #LOBBY timestamp=2019-01-01T00:00:00.000Z",
            "MARKREAD bob timestamp=2023-07-04T00:00:00.000Z",
        )
        self.assertEqual(
            lines(self.alice),
            [
                ":test.host MARKREAD #lobby *",
                ":test.host MARKREAD #lobby timestamp=2019-06-01T12:00:00.000Z",
                ":test.host MARKREAD #LOBBY timestamp=2019-06-01T12:00:00.000Z",
                ":test.host MARKREAD bob timestamp=2023-07-04T00:00:00.000Z",
            ],
        )

    def test_errors(self):
        self.alice.send("MARKREAD", "MARKREAD #lobby *", "MARKREAD #lobby timestamp=x")
        self.assertEqual(
            [m.params[:2] for m in self.alice.messages()],
            [
                ("MARKREAD", "NEED_MORE_PARAMS"),
                ("MARKREAD", "INVALID_PARAMS"),
                ("MARKREAD", "INVALID_PARAMS"),
            ],
        )

    def test_sent_on_join_before_names_end(self):
        self.alice.send("MARKREAD #lobby timestamp=2019-06-01T12:00:00.000Z")
        self.alice.raw()
        self.alice.send("JOIN #lobby")
        got = self.alice.messages()
        self.assertEqual([m.command for m in got], ["JOIN", "MARKREAD", "353", "366"])
        self.assertEqual(
            got[1].params, ("#lobby", "timestamp=2019-06-01T12:00:00.000Z")
        )
