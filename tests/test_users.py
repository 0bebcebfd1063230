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
        self.assertEqual(lines(self.alice), [
            ":test.host 311 alice bob ~bob 127.0.0.1 * Bob",
            ":test.host 319 alice bob :#lobby #dev",
            ":test.host 312 alice bob test.host :chatroom host",
            ":test.host 317 alice bob 42 %s :seconds idle, signon time" % (signon,),
            ":test.host 318 alice bob :End of /WHOIS list",
        ])

    def test_whois_server_form_and_unknown(self):
        """WHOIS server nick; an unknown nick gets 401 then 318."""
        self.alice.send("WHOIS test.host nobody")
        self.assertEqual(lines(self.alice), [
            ":test.host 401 alice nobody :No such nick/channel",
            ":test.host 318 alice nobody :End of /WHOIS list",
        ])
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
        self.assertEqual(lines(self.alice), [
            ":test.host 314 alice bob ~bob 127.0.0.1 * Bob",
            ":test.host 312 alice bob test.host :Mon, 24 Nov 2025 16:00:10 UTC",
            ":test.host 369 alice bob :End of WHOWAS",
        ])

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
        self.assertEqual(lines(self.alice), [
            ":test.host 303 alice :Bob alice",
            ":test.host 303 alice Bob",
        ])

    def test_userhost(self):
        self.bob.send("AWAY :gone")
        self.alice.send("USERHOST bob alice nobody")
        self.assertEqual(lines(self.alice), [
            ":test.host 302 alice :Bob=-~Bob@127.0.0.1 alice=+~alice@127.0.0.1",
        ])

    def test_lusers(self):
        FakeClient(self.host)  # connected, not registered
        self.alice.send("LUSERS")
        self.assertEqual(lines(self.alice), [
            ":test.host 251 alice :There are 0 users and 2 invisible on 1 servers",
            ":test.host 252 alice 0 :IRC Operators online",
            ":test.host 253 alice 1 :unregistered connections",
            ":test.host 254 alice 1 :channels formed",
            ":test.host 255 alice :I have 2 clients and 0 servers",
            ":test.host 265 alice 2 2 :Current local users 2, max 2",
            ":test.host 266 alice 2 2 :Current global users 2, max 2",
        ])

    def test_version_and_time(self):
        self.alice.send("VERSION", "TIME")
        got = lines(self.alice)
        self.assertEqual(got[0], ":test.host 351 alice chatroom-%s test.host "
                         ":chatroom rooms over IRC" % (__version__,))
        self.assertEqual([line.split()[1] for line in got[1:]],
                         ["005", "005", "391"])
        self.assertEqual(got[-1], ":test.host 391 alice test.host "
                         ":Mon, 24 Nov 2025 16:00:00 UTC")


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
        self.assertEqual(lines(self.bob), [
            ":test.host 306 bob :You have been marked as being away"])
        self.assertEqual(lines(self.alice), [
            ":bob!~bob@127.0.0.1 AWAY :out for lunch"])
        self.assertEqual(self.carol.raw(), b"")
        self.bob.send("AWAY")
        self.assertEqual(lines(self.bob), [
            ":test.host 305 bob :You are no longer marked as being away"])
        self.assertEqual(lines(self.alice), [":bob!~bob@127.0.0.1 AWAY"])

    def test_privmsg_to_away_user_gets_301(self):
        self.bob.send("AWAY :brb")
        self.carol.send("PRIVMSG bob :hi", "NOTICE bob :hi")
        self.assertEqual(lines(self.carol), [":test.host 301 carol bob brb"])

    def test_who_shows_gone(self):
        self.bob.send("AWAY :brb")
        self.carol.send("WHO bob")
        self.assertEqual(self.carol.messages()[0].params[6], "G")
