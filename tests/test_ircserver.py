"""Tests for chatroom.ircserver and chatroom.host: raw IRC lines in and out."""

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ISSLTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides

from chatroom.core.ircline import MAX_UNTERMINATED_BYTES, parse_line
from chatroom.history import HistoryStore
from chatroom.host import Limits
from chatroom.ircserver import IRCConnection
from chatroom.wellknown import TAKEOVER_CAPABILITY

from .fakes import FakeClient, make_host

NO_FLOOD = Limits(flood_rate=0)
ALL_CAPS = (
    "message-tags",
    "server-time",
    "echo-message",
    "batch",
    "labeled-response",
    "draft/chathistory",
)


class RegistrationTests(SynchronousTestCase):
    """CAP, NICK and USER up to the welcome."""

    def setUp(self):
        self.host = make_host()

    def test_welcome(self):
        """NICK and USER get 001 to 005 and the MOTD reply."""
        client = FakeClient(self.host)
        client.send("NICK alice", "USER alice 0 * :Alice A")
        messages = client.messages()
        self.assertEqual(
            [m.command for m in messages],
            [
                "001",
                "002",
                "003",
                "004",
                "005",
                "005",
                "251",
                "252",
                "253",
                "254",
                "255",
                "265",
                "266",
                "422",
            ],
        )
        self.assertEqual(messages[0].params[0], "alice")
        isupport = " ".join(" ".join(m.params) for m in messages if m.command == "005")
        for token in (
            "CHATHISTORY=100",
            "CASEMAPPING=ascii",
            "MSGREFTYPES=msgid,timestamp",
            "UTF8ONLY",
        ):
            self.assertIn(token, isupport)

    def test_cap_negotiation_holds_registration(self):
        """With CAP LS, registration waits for CAP END."""
        client = FakeClient(self.host)
        client.send("CAP LS 302")
        (ls,) = client.messages()
        self.assertEqual(ls.params[:2], ("*", "LS"))
        self.assertEqual(
            set(ls.params[2].split()),
            {
                "batch",
                "draft/chathistory",
                "draft/event-playback",
                "echo-message",
                "draft/read-marker",
                "labeled-response",
                "message-tags",
                "server-time",
                "away-notify",
                "cap-notify",
                "extended-join",
                "extended-monitor",
                "invite-notify",
                "multi-prefix",
                "setname",
                "userhost-in-names",
                TAKEOVER_CAPABILITY,
            },
        )
        client.send("NICK alice", "USER alice 0 * :A", "CAP REQ :echo-message batch")
        self.assertEqual(client.commands(), ["CAP"])
        self.assertFalse(client.protocol.registered)
        client.send("CAP END")
        self.assertEqual(client.commands()[0], "001")
        self.assertEqual(client.protocol.caps, {"echo-message", "batch"})

    def test_cap_req_unknown_naks_all(self):
        client = FakeClient(self.host)
        client.send("CAP REQ :batch sasl")
        (nak,) = client.messages()
        self.assertEqual(nak.params[1:], ("NAK", "batch sasl"))
        self.assertEqual(client.protocol.caps, set())

    def test_commands_before_registration(self):
        client = FakeClient(self.host)
        client.send("JOIN #lobby")
        (reply,) = client.messages()
        self.assertEqual(reply.command, "451")

    def test_unknown_command(self):
        client = FakeClient(self.host).register("alice")
        client.send("FROB x")
        (reply,) = client.messages()
        self.assertEqual((reply.command, reply.params[1]), ("421", "FROB"))

    def test_nick_in_use_case_insensitive(self):
        FakeClient(self.host).register("Alice")
        client = FakeClient(self.host)
        client.send("NICK aLICE")
        (reply,) = client.messages()
        self.assertEqual(reply.command, "433")
        client.send("NICK alice2", "USER a 0 * :A")
        self.assertTrue(client.protocol.registered)

    def test_erroneous_nick(self):
        client = FakeClient(self.host)
        for nick in ("#x", "1abc", "a" * 31, "a,b"):
            client.send("NICK " + nick)
            self.assertEqual(client.commands(), ["432"], nick)

    def test_ping(self):
        client = FakeClient(self.host)
        client.send("PING :tok en")
        (pong,) = client.messages()
        self.assertEqual(pong.params, ("test.host", "tok en"))


class RoomTests(SynchronousTestCase):
    """Joining, talking, leaving: what members see, in which order."""

    def setUp(self):
        self.host = make_host(rooms=("lobby", "Dev"), limits=NO_FLOOD)
        self.alice = FakeClient(self.host).register("alice", ALL_CAPS)
        self.bob = FakeClient(self.host).register("bob")

    def test_join_unknown_room(self):
        self.bob.send("JOIN #nope")
        (reply,) = self.bob.messages()
        self.assertEqual((reply.command, reply.params[1]), ("403", "#nope"))

    def test_join_replies(self):
        """The joiner sees its JOIN (with msgid), then NAMES."""
        self.bob.join()
        self.alice.send("JOIN #lobby")
        join, names, end = self.alice.messages()
        self.assertEqual(
            (join.command, join.prefix), ("JOIN", "alice!~alice@127.0.0.1")
        )
        self.assertEqual(join.tags["msgid"], "lobby:2")
        self.assertIn("time", join.tags)
        self.assertEqual(
            (names.command, names.params[1:]), ("353", ("=", "#lobby", "bob alice"))
        )
        self.assertEqual(end.command, "366")
        (bob_sees,) = self.bob.messages()
        self.assertEqual(bob_sees.command, "JOIN")
        self.assertEqual(bob_sees.tags, {})

    def test_case_insensitive_room(self):
        self.bob.send("JOIN #dev")
        join, _, _ = self.bob.messages()
        self.assertEqual(join.params, ("#Dev",))

    def test_message_delivery_and_echo(self):
        """Others get the message; the sender only with echo-message."""
        self.alice.join()
        self.bob.join()
        self.alice.raw()
        self.bob.send("PRIVMSG #lobby :hello there")
        self.assertEqual(self.bob.messages(), [])
        (got,) = self.alice.messages()
        self.assertEqual(
            (got.command, got.params, got.prefix),
            ("PRIVMSG", ("#lobby", "hello there"), "bob!~bob@127.0.0.1"),
        )
        self.alice.send("PRIVMSG #lobby :me too")
        (echo,) = self.alice.messages()
        (seen,) = self.bob.messages()
        self.assertEqual(echo.params, seen.params)
        self.assertEqual(echo.tags["msgid"], "lobby:4")

    def test_total_order(self):
        """Interleaved senders: every member sees the same sequence."""
        carol = FakeClient(self.host).register("carol", ("echo-message",)).join()
        self.alice.join()
        self.bob.join()
        for client in (self.alice, self.bob, carol):
            client.raw()
        for n in range(5):
            self.alice.protocol.dataReceived(b"PRIVMSG #lobby :a%d\r\n" % (n,))
            self.bob.protocol.dataReceived(b"PRIVMSG #lobby :b%d\r\n" % (n,))
            carol.protocol.dataReceived(b"PRIVMSG #lobby :c%d\r\n" % (n,))
            if n % 2:
                self.host.clock.advance(0)
        self.host.clock.advance(0)
        alice_seen = [m.params[1] for m in self.alice.messages()]
        carol_seen = [m.params[1] for m in carol.messages()]
        self.assertEqual(alice_seen, carol_seen)
        self.assertEqual(len(alice_seen), 15)
        self.assertEqual(
            sorted(alice_seen),
            sorted("%s%d" % (who, n) for who in "abc" for n in range(5)),
        )
        bob_seen = [m.params[1] for m in self.bob.messages()]
        self.assertEqual(bob_seen, [t for t in alice_seen if not t.startswith("b")])

    def test_stored_before_delivered(self):
        """Nobody sees an event before it is committed to the store."""
        self.alice.join()
        self.bob.join()
        self.alice.raw()
        self.bob.protocol.dataReceived(b"PRIVMSG #lobby :first\r\n")
        self.assertEqual(self.alice.raw(), b"")
        self.assertEqual(self.host.store.last_seq("lobby"), 2)
        self.host.clock.advance(0)
        self.assertEqual(self.host.store.last_seq("lobby"), 3)
        self.assertIn(b"first", self.alice.raw())

    def test_store_failure_delivers_nothing(self):
        """If the commit fails, the events are not shown to anyone."""
        self.alice.join()
        self.bob.join()
        self.alice.raw()

        def broken(events):
            raise OSError("disk full")

        self.patch(self.host.store, "append", broken)
        self.bob.send("PRIVMSG #lobby :lost")
        self.assertEqual(self.alice.raw(), b"")
        self.assertEqual(self.host.counters["store-failures"], 1)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_one_write_per_member_per_turn(self):
        """All events of a turn reach a member in one transport write."""
        self.alice.join()
        self.bob.join()
        self.alice.raw()
        writes = []
        self.patch(self.alice.transport, "write", writes.append)
        for n in range(10):
            self.bob.protocol.dataReceived(b"PRIVMSG #lobby :m%d\r\n" % (n,))
        self.host.clock.advance(0)
        self.assertEqual(len(writes), 1)
        self.assertEqual(writes[0].count(b"PRIVMSG"), 10)

    def test_not_in_room(self):
        self.bob.send("PRIVMSG #lobby :hi", "NOTICE #lobby :hi", "PART #lobby")
        self.assertEqual(self.bob.commands(), ["404", "442"])

    def test_part_and_quit_seen(self):
        self.alice.join()
        self.bob.join()
        self.alice.raw()
        self.bob.send("PART #lobby :see you")
        (part,) = self.alice.messages()
        self.assertEqual((part.command, part.params), ("PART", ("#lobby", "see you")))
        self.bob.join()
        self.alice.raw()
        self.bob.send("QUIT :bye now")
        self.assertTrue(self.bob.transport.disconnecting)
        self.bob.disconnect()
        (quit,) = self.alice.messages()
        self.assertEqual((quit.command, quit.params), ("QUIT", ("Quit: bye now",)))
        self.assertIsNone(self.host.nick_owner("bob"))

    def test_quit_after_commands_in_one_write(self):
        """A script that writes JOIN, PRIVMSG and QUIT at once (C{printf ...
        | openssl s_client}) gets the JOIN's and the message's replies
        before the ERROR, not only the ERROR: the QUIT waits for what the
        commands before it caused to be stored and sent."""
        self.bob.protocol.dataReceived(
            b"JOIN #lobby\r\nPRIVMSG #lobby :hello\r\nQUIT :bye\r\n"
        )
        self.host.clock.advance(0)
        self.assertEqual(self.bob.commands(), ["JOIN", "353", "366", "ERROR"])
        self.assertEqual(
            [
                e.command
                for e in self.host.store.between("lobby", 0, 99, 9, True, False)
            ],
            ["JOIN", "PRIVMSG"],
        )

    def test_quit_closes_even_if_peer_lingers(self):
        """After QUIT the host closes; a peer that never goes is aborted."""
        aborted = []
        self.patch(self.bob.transport, "abortConnection", lambda: aborted.append(1))
        self.bob.send("QUIT")
        self.assertTrue(self.bob.transport.disconnecting)
        self.host.clock.advance(9)
        self.assertEqual(aborted, [])
        self.host.clock.advance(1)
        self.assertEqual(aborted, [1])

    def test_quit_once_per_member(self):
        """A member sharing two rooms with the leaver sees one QUIT."""
        for channel in ("#lobby", "#dev"):
            self.alice.join(channel)
            self.bob.join(channel)
        self.alice.raw()
        self.bob.disconnect()
        self.assertEqual(self.alice.commands(), ["QUIT"])
        self.assertEqual(len(self.host.rooms["lobby"]), 1)
        self.assertEqual(
            self.host.store.between("dev", 0, 99, 9, True, False)[-1].command, "QUIT"
        )

    def test_disconnect_mid_line(self):
        """A half-sent line and a dropped connection leave nothing behind."""
        self.alice.join()
        self.bob.join()
        self.bob.protocol.dataReceived(b"PRIVMSG #lobby :half a li")
        self.bob.disconnect()
        self.assertEqual(self.host.rooms["lobby"].members, (self.alice.protocol,))
        self.assertEqual(self.host.clients, 1)
        self.assertNotIn(b"half", self.alice.raw())

    def test_topic(self):
        self.alice.join()
        self.alice.send("TOPIC #lobby")
        self.assertEqual(self.alice.commands(), ["331"])
        self.alice.send("TOPIC #lobby :Rooftop news")
        (topic,) = self.alice.messages()
        self.assertEqual(
            (topic.command, topic.params), ("TOPIC", ("#lobby", "Rooftop news"))
        )
        self.bob.send("JOIN #lobby")
        messages = self.bob.messages()
        self.assertEqual(
            [m.command for m in messages], ["JOIN", "332", "333", "353", "366"]
        )
        # RPL_TOPICWHOTIME: the setter's whole nick!user@host, then seconds.
        self.assertEqual(
            messages[2].params[1:3], ("#lobby", self.alice.protocol.source)
        )
        self.assertEqual(self.host.store.topic("lobby").text, "Rooftop news")

    def test_nick_change(self):
        self.alice.join()
        self.bob.join()
        self.alice.raw()
        self.bob.send("NICK robert")
        (nick,) = self.alice.messages()
        self.assertEqual(
            (nick.prefix, nick.params), ("bob!~bob@127.0.0.1", ("robert",))
        )
        self.assertEqual(self.bob.commands(), ["NICK"])
        self.assertIsNone(self.host.nick_owner("bob"))
        self.bob.send("PRIVMSG #lobby :x")
        self.assertEqual(self.alice.messages()[0].prefix, "robert!~bob@127.0.0.1")

    def test_private_message(self):
        self.bob.send("PRIVMSG alice :psst", "PRIVMSG nobody :x")
        (pm,) = self.alice.messages()
        self.assertEqual((pm.command, pm.params), ("PRIVMSG", ("alice", "psst")))
        self.assertEqual(self.bob.commands(), ["401"])

    def test_who_names_mode(self):
        self.alice.join()
        self.alice.send(
            "WHO #lobby",
            "NAMES #lobby",
            "MODE #lobby",
            "MODE #lobby b",
            "MODE alice",
            "MODE #lobby +i",
            "MODE #lobby +q",
        )
        self.assertEqual(
            self.alice.commands(),
            ["352", "315", "353", "366", "324", "329", "368", "221", "482", "472"],
        )

    def test_tagmsg_relayed_to_tag_members_only(self):
        self.alice.join()
        self.bob.join()
        carol = FakeClient(self.host).register("carol", ("message-tags",)).join()
        self.alice.raw()
        self.bob.raw()
        carol.raw()
        self.alice.send("@+typing=active;+odd=a\\sb\\ TAGMSG #lobby")
        (tagmsg,) = carol.messages()
        msgid = tagmsg.tags.pop("msgid")
        self.assertTrue(msgid.startswith("p"), msgid)
        self.assertEqual(tagmsg.tags, {"+typing": "active", "+odd": "a b"})
        self.assertEqual(self.bob.raw(), b"")

    def test_client_tags_on_messages(self):
        self.alice.join()
        carol = FakeClient(self.host).register("carol", ("message-tags",)).join()
        self.alice.send("@+draft/reply=lobby:1;label=q PRIVMSG #lobby :hi")
        (message,) = carol.messages()
        self.assertEqual(message.tags["+draft/reply"], "lobby:1")
        self.assertNotIn("label", message.tags)


class BadInputTests(SynchronousTestCase):
    """Bad input is refused, counted and answered; the connection stays."""

    def setUp(self):
        self.host = make_host(limits=NO_FLOOD)
        self.alice = FakeClient(self.host).register("alice").join()
        self.bob = FakeClient(self.host).register("bob").join()
        self.alice.raw()

    def test_line_too_long(self):
        """417, not relayed, and the next line works."""
        self.bob.send("PRIVMSG #lobby :" + "x" * 600, "PRIVMSG #lobby :ok")
        self.assertEqual(self.bob.commands(), ["417"])
        (message,) = self.alice.messages()
        self.assertEqual(message.params[1], "ok")
        self.assertEqual(self.host.counters["input-too-long"], 1)

    def test_unterminated_flood(self):
        self.bob.protocol.dataReceived(b"x" * (MAX_UNTERMINATED_BYTES + 1))
        self.assertEqual(self.bob.messages()[-1].params, ("RecvQ exceeded",))
        self.assertTrue(self.bob.transport.disconnecting)
        self.bob.disconnect()
        self.assertEqual(self.alice.messages()[0].params, ("RecvQ exceeded",))

    def test_invalid_utf8(self):
        self.bob.protocol.dataReceived(b"PRIVMSG #lobby :\xc3\x28\r\n")
        self.host.clock.advance(0)
        (fail,) = self.bob.messages()
        self.assertEqual(fail.params[:2], ("*", "INVALID_UTF8"))
        self.assertEqual(self.alice.raw(), b"")
        self.bob.send("PRIVMSG #lobby :still here")
        self.assertEqual(len(self.alice.messages()), 1)

    def test_utf8_split_across_reads(self):
        data = "PRIVMSG #lobby :h\u00e9llo\r\n".encode("utf-8")
        self.bob.protocol.dataReceived(data[:18])
        self.bob.protocol.dataReceived(data[18:])
        self.host.clock.advance(0)
        (message,) = self.alice.messages()
        self.assertEqual(message.params[1], "h\u00e9llo")

    def test_empty_lines_and_lone_cr(self):
        self.bob.protocol.dataReceived(
            b"\r\n\r\n\n\rPRIVMSG #lobby :a\rPRIVMSG #lobby :b\n"
        )
        self.host.clock.advance(0)
        self.assertEqual([m.params[1] for m in self.alice.messages()], ["a", "b"])
        self.assertEqual(self.bob.raw(), b"")

    def test_malformed_counted(self):
        self.bob.send(":onlyprefix", "PRIVMSG #lobby :a\0b")
        self.assertEqual(self.host.counters["malformed-lines"], 2)
        self.assertEqual(self.alice.raw(), b"")

    def test_missing_parameters(self):
        self.bob.send("PRIVMSG", "PRIVMSG #lobby", "JOIN", "USER x", "NICK")
        self.assertEqual(self.bob.commands(), ["411", "412", "461", "462", "431"])

    def test_too_much_before_registration(self):
        client = FakeClient(self.host)
        client.protocol.dataReceived(b"PING x\r\n" * 65)
        self.assertEqual(client.messages()[-1].command, "ERROR")
        self.assertTrue(client.transport.disconnecting)


class FloodTests(SynchronousTestCase):
    """Flood control delays rather than drops."""

    def setUp(self):
        self.host = make_host()
        self.alice = FakeClient(self.host).register("alice").join()
        self.bob = FakeClient(self.host).register("bob").join()
        self.host.clock.advance(10)  # refill the buckets spent on registering
        self.alice.raw()

    def test_excess_delayed_not_dropped(self):
        lines = b"".join(b"PRIVMSG #lobby :m%d\r\n" % (n,) for n in range(9))
        self.bob.protocol.dataReceived(lines)
        self.host.clock.advance(0)
        self.assertEqual(len(self.alice.messages()), 5)
        self.assertEqual(self.bob.transport.producerState, "paused")
        self.host.clock.pump([0.5] * 4)
        self.assertEqual(
            [m.params[1] for m in self.alice.messages()], ["m5", "m6", "m7", "m8"]
        )
        self.assertEqual(self.bob.transport.producerState, "producing")

    def test_excess_flood_disconnects(self):
        line = b"PRIVMSG #lobby :" + b"x" * 400 + b"\r\n"
        self.bob.protocol.dataReceived(line * 30)
        self.assertEqual(self.bob.messages()[-1].params, ("Excess Flood",))
        self.assertTrue(self.bob.transport.disconnecting)

    def test_burst_starts_at_registration(self):
        """Registering does not spend the burst (it has its own budget): a
        client that registers and sends five commands at once, as
        C{chatroom say} does, has none of them delayed."""
        carol = FakeClient(self.host)
        carol.protocol.dataReceived(
            b"CAP LS 302\r\nCAP REQ :echo-message\r\nNICK carol\r\n"
            b"USER carol 0 * :Carol\r\nCAP END\r\nJOIN #lobby\r\n"
            + b"".join(b"PRIVMSG #lobby :c%d\r\n" % (n,) for n in range(4))
        )
        self.host.clock.advance(0)
        self.assertEqual(
            [m.params[1] for m in self.alice.messages() if m.command == "PRIVMSG"],
            ["c0", "c1", "c2", "c3"],
        )
        self.assertNotIn("flood-delayed", self.host.counters)

    def test_delayed_quit_keeps_its_reason(self):
        """A client that sends QUIT and hangs up at once, while flood
        control still holds the QUIT, leaves with its own reason."""
        lines = b"".join(b"PRIVMSG #lobby :m%d\r\n" % (n,) for n in range(5))
        self.bob.protocol.dataReceived(lines + b"QUIT :gone fishing\r\n")
        self.host.clock.advance(0)
        self.alice.raw()
        self.bob.protocol.connectionLost(Failure(ConnectionDone()))
        self.host.clock.advance(0)
        (quit,) = self.alice.messages()
        self.assertEqual((quit.command, quit.params), ("QUIT", ("Quit: gone fishing",)))

    def test_hang_up_without_quit(self):
        """Without a QUIT, the rooms are told the connection closed."""
        self.bob.protocol.connectionLost(Failure(ConnectionDone()))
        self.host.clock.advance(0)
        (quit,) = self.alice.messages()
        self.assertEqual(quit.params, ("Connection closed",))


class TimeoutTests(SynchronousTestCase):
    """Deadlines for the handshake, registration and silent peers."""

    def setUp(self):
        self.host = make_host()

    def test_registration_timeout(self):
        client = FakeClient(self.host)
        self.host.clock.advance(29)
        self.assertFalse(client.transport.disconnecting)
        self.host.clock.advance(1)
        self.assertEqual(
            client.messages()[-1].params,
            ("Closing link: 127.0.0.1 (Registration timeout)",),
        )
        self.assertTrue(client.transport.disconnecting)

    def test_disconnect_mid_handshake(self):
        """A TLS client gone before its handshake leaves nothing behind."""
        from twisted.internet.testing import StringTransport

        transport = StringTransport()
        directlyProvides(transport, ISSLTransport)
        protocol = IRCConnection(self.host)
        protocol.makeConnection(transport)
        self.assertEqual(self.host.clients, 1)
        protocol.connectionLost()
        self.assertEqual((self.host.clients, self.host.connections), (0, set()))
        self.assertEqual(self.host.clock.getDelayedCalls(), [])

    def test_disconnect_mid_batch(self):
        """A client gone right after asking for a history batch: no leak."""
        client = FakeClient(self.host).register("alice", ALL_CAPS).join()
        client.protocol.dataReceived(
            b"@label=x CHATHISTORY LATEST #lobby * 10\r\nPRIVMSG #lobby :la"
        )
        client.disconnect()
        self.assertEqual((self.host.clients, self.host.nicks), (0, {}))
        self.assertEqual(self.host.rooms["lobby"].members, ())
        self.assertEqual(self.host.clock.getDelayedCalls(), [])
        self.assertEqual(self.host.rooms_of(client.protocol), [])

    def test_handshake_timeout(self):
        """A TLS client that never finishes the handshake is aborted at 10 s."""
        client = FakeClient.__new__(FakeClient)
        from twisted.internet.testing import StringTransport

        client.host = self.host
        client.transport = StringTransport()
        directlyProvides(client.transport, ISSLTransport)
        client.protocol = IRCConnection(self.host)
        client.protocol.makeConnection(client.transport)
        self.host.clock.advance(10)
        self.assertTrue(client.transport.disconnecting)
        self.assertEqual(self.host.counters["handshake-timeouts"], 1)

    def test_idle_ping_then_close(self):
        client = FakeClient(self.host).register("alice")
        self.host.clock.advance(90)
        (ping,) = client.messages()
        self.assertEqual(ping.command, "PING")
        self.host.clock.advance(59)
        self.assertFalse(client.transport.disconnecting)
        self.host.clock.advance(1)
        self.assertIn("Ping timeout", client.messages()[-1].params[0])
        self.assertTrue(client.transport.disconnecting)

    def test_activity_keeps_alive(self):
        client = FakeClient(self.host).register("alice")
        for _ in range(5):
            self.host.clock.advance(80)
            client.send("PONG x")
        self.assertEqual(client.commands(), [])
        self.assertFalse(client.transport.disconnecting)


class SlowReaderTests(SynchronousTestCase):
    """A member that stops reading is held, then cut off; others go on."""

    def setUp(self):
        self.host = make_host(limits=NO_FLOOD)
        self.alice = FakeClient(self.host).register("alice").join()
        self.bob = FakeClient(self.host).register("bob").join()
        self.alice.raw()

    def test_held_then_released(self):
        self.alice.protocol.pauseProducing()
        self.bob.send("PRIVMSG #lobby :while paused")
        self.assertEqual(self.alice.raw(), b"")
        self.alice.protocol.resumeProducing()
        self.assertIn(b"while paused", self.alice.raw())

    def test_sendq_exceeded(self):
        self.alice.protocol.pauseProducing()
        carol = FakeClient(self.host).register("carol").join()
        for n in range(300):
            self.bob.send("PRIVMSG #lobby :" + "x" * 400)
        self.assertTrue(self.alice.transport.disconnecting)
        self.assertEqual(self.host.counters["sendq-exceeded"], 1)
        self.assertEqual(carol.raw().count(b"PRIVMSG"), 300)


class AdmissionTests(SynchronousTestCase):
    """Connection limits per address and per host."""

    def test_per_address(self):
        host = make_host()
        clients = [FakeClient(host, "10.0.0.1") for _ in range(6)]
        self.assertEqual(
            [c.transport.disconnecting for c in clients], [False] * 5 + [True]
        )
        self.assertEqual(clients[5].messages()[0].command, "ERROR")
        clients[0].disconnect()
        self.assertFalse(FakeClient(host, "10.0.0.1").transport.disconnecting)

    def test_loopback_exempt(self):
        host = make_host()
        clients = [FakeClient(host) for _ in range(10)]
        self.assertFalse(any(c.transport.disconnecting for c in clients))

    def test_ipv6_grouped_per_64(self):
        host = make_host(limits=Limits(max_per_address=1))
        from chatroom.core.addresses import address_key

        self.assertEqual(address_key("2001:db8::1"), address_key("2001:db8::ffff"))
        self.assertIsNone(host.admit("2001:db8::1"))
        self.assertIsNotNone(host.admit("2001:db8::2"))

    def test_ipv4_mapped_counts_as_ipv4(self):
        """An IPv4 client seen on a dual-stack socket (C{::ffff:a.b.c.d})
        shares its address's limit, as in the handshake limits."""
        host = make_host(limits=Limits(max_per_address=1))
        self.assertIsNone(host.admit("192.0.2.7"))
        self.assertIsNotNone(host.admit("::ffff:192.0.2.7"))
        host.release("192.0.2.7")
        self.assertIsNone(host.admit("::ffff:192.0.2.7"))

    def test_pre_registration_flood_throttles_address(self):
        """An address that floods before registering is refused for a while."""
        host = make_host()
        flooder = FakeClient(host, "10.0.0.7")
        flooder.protocol.dataReceived(b"PING x\r\n" * 65)
        flooder.disconnect()
        again = FakeClient(host, "10.0.0.7")
        self.assertTrue(again.transport.disconnecting)
        self.assertIn("throttled", again.messages()[0].params[0])
        self.assertFalse(FakeClient(host, "10.0.0.8").transport.disconnecting)
        host.clock.advance(60)
        self.assertFalse(FakeClient(host, "10.0.0.7").transport.disconnecting)

    def test_loopback_never_throttled(self):
        host = make_host()
        FakeClient(host).protocol.dataReceived(b"PING x\r\n" * 65)
        self.assertFalse(FakeClient(host).transport.disconnecting)

    def test_max_clients(self):
        host = make_host(limits=Limits(max_clients=2))
        clients = [FakeClient(host) for _ in range(3)]
        self.assertTrue(clients[2].transport.disconnecting)
        self.assertEqual(host.clients, 2)


class LabeledResponseTests(SynchronousTestCase):
    """IRCv3 labeled-response."""

    def setUp(self):
        self.host = make_host(limits=NO_FLOOD)
        self.alice = FakeClient(self.host).register("alice", ALL_CAPS)

    def test_single_reply(self):
        self.alice.send("@label=p1 PING x")
        (pong,) = self.alice.messages()
        self.assertEqual((pong.command, pong.tags["label"]), ("PONG", "p1"))

    def test_no_reply_is_ack(self):
        self.alice.send("@label=p2 PONG x")
        (ack,) = self.alice.messages()
        self.assertEqual((ack.command, ack.tags), ("ACK", {"label": "p2"}))

    def test_echo_carries_label(self):
        self.alice.join()
        self.alice.send("@label=m1 PRIVMSG #lobby :hi")
        (echo,) = self.alice.messages()
        self.assertEqual((echo.command, echo.tags["label"]), ("PRIVMSG", "m1"))
        self.assertIn("msgid", echo.tags)

    def test_join_batched(self):
        self.alice.send("@label=j1 JOIN #lobby")
        messages = self.alice.messages()
        self.assertEqual(
            [m.command for m in messages], ["BATCH", "JOIN", "353", "366", "BATCH"]
        )
        self.assertEqual(messages[0].tags, {"label": "j1"})
        self.assertEqual(messages[0].params[1], "labeled-response")
        ref = messages[0].params[0][1:]
        self.assertTrue(all(m.tags["batch"] == ref for m in messages[1:-1]))
        self.assertEqual(messages[-1].params, ("-" + ref,))

    def test_without_echo_is_ack(self):
        self.alice.send("CAP REQ -echo-message")
        self.alice.join()
        self.alice.send("@label=m2 PRIVMSG #lobby :hi")
        (ack,) = self.alice.messages()
        self.assertEqual((ack.command, ack.tags), ("ACK", {"label": "m2"}))

    def test_echo_keeps_the_room_order(self):
        """A labelled echo is written in its place in the room's order: a
        later message of someone else, stored in the same turn, comes after
        it (a client that drops events it has seen the number of would
        otherwise lose its own message)."""
        bob = FakeClient(self.host).register("bob").join()
        self.alice.join()
        self.alice.raw()
        for client, line in [
            (self.alice, "@label=a1 PRIVMSG #lobby :one"),
            (bob, "PRIVMSG #lobby :two"),
            (self.alice, "@label=a2 PRIVMSG #lobby :three"),
            (bob, "PRIVMSG #lobby :four"),
        ]:
            client.protocol.dataReceived(line.encode() + b"\r\n")
        self.host.clock.advance(0)
        messages = self.alice.messages()
        self.assertEqual(
            [(m.params[1], m.tags.get("label")) for m in messages],
            [("one", "a1"), ("two", None), ("three", "a2"), ("four", None)],
        )
        seqs = [int(m.tags["msgid"].rsplit(":", 1)[1]) for m in messages]
        self.assertEqual(seqs, sorted(seqs))

    def test_echoes_to_two_rooms_keep_the_order(self):
        """A labelled message to two rooms is one batch; a message stored
        after it in the same turn follows the batch."""
        host = make_host(rooms=("lobby", "other"), limits=NO_FLOOD)
        alice = FakeClient(host).register("alice", ALL_CAPS).join()
        alice.join("#other")
        bob = FakeClient(host).register("bob").join()
        alice.raw()
        alice.protocol.dataReceived(b"@label=b1 PRIVMSG #lobby,#other :both\r\n")
        bob.protocol.dataReceived(b"PRIVMSG #lobby :after\r\n")
        host.clock.advance(0)
        messages = alice.messages()
        self.assertEqual(
            [m.command for m in messages],
            ["BATCH", "PRIVMSG", "PRIVMSG", "BATCH", "PRIVMSG"],
        )
        self.assertEqual(messages[0].tags, {"label": "b1"})
        self.assertEqual(messages[-1].params, ("#lobby", "after"))


class ChatHistoryTests(SynchronousTestCase):
    """IRCv3 draft/chathistory over the stored events."""

    def setUp(self):
        self.host = make_host(limits=NO_FLOOD)
        self.alice = FakeClient(self.host).register("alice", ALL_CAPS).join()
        self.bob = FakeClient(self.host).register("bob").join()
        # m1 is seq 3, m2 seq 4, ... m10 seq 12.
        for n in range(1, 11):
            self.host.clock.advance(1)
            self.bob.send("PRIVMSG #lobby :m%d" % (n,))
        self.alice.raw()

    def history(self, request):
        self.alice.send(request)
        messages = self.alice.messages()
        self.assertEqual(messages[0].command, "BATCH")
        self.assertEqual(messages[0].params[1:], ("chathistory", "#lobby"))
        ref = messages[0].params[0][1:]
        body = messages[1:-1]
        self.assertTrue(all(m.tags["batch"] == ref for m in body))
        return [m.params[1] for m in body]

    def test_latest(self):
        self.assertEqual(
            self.history("CHATHISTORY LATEST #lobby * 3"), ["m8", "m9", "m10"]
        )
        self.assertEqual(
            self.history("CHATHISTORY LATEST #lobby msgid=lobby:10 5"), ["m9", "m10"]
        )

    def test_before_after(self):
        self.assertEqual(
            self.history("CHATHISTORY BEFORE #lobby msgid=lobby:6 2"), ["m2", "m3"]
        )
        self.assertEqual(
            self.history("CHATHISTORY AFTER #lobby msgid=lobby:6 2"), ["m5", "m6"]
        )

    def test_around(self):
        self.assertEqual(
            self.history("CHATHISTORY AROUND #lobby msgid=lobby:7 4"),
            ["m3", "m4", "m5", "m6"],
        )

    def test_between(self):
        self.assertEqual(
            self.history("CHATHISTORY BETWEEN #lobby msgid=lobby:4 msgid=lobby:9 2"),
            ["m3", "m4"],
        )
        self.assertEqual(
            self.history("CHATHISTORY BETWEEN #lobby msgid=lobby:9 msgid=lobby:4 2"),
            ["m5", "m6"],
        )

    def test_timestamps(self):
        """m1 was sent at t0+1 s, m2 at t0+2 s, ..."""
        self.alice.send("CHATHISTORY LATEST #lobby * 1")
        stamp = self.alice.messages()[1].tags["time"]  # m10
        self.assertEqual(
            self.history("CHATHISTORY BEFORE #lobby timestamp=%s 2" % (stamp,)),
            ["m8", "m9"],
        )
        self.assertEqual(
            self.history("CHATHISTORY AFTER #lobby timestamp=%s 2" % (stamp,)), []
        )

    def test_limit_capped(self):
        for n in range(150):
            self.bob.protocol.dataReceived(b"PRIVMSG #lobby :x\r\n")
        self.host.clock.advance(0)
        self.alice.raw()
        self.assertEqual(len(self.history("CHATHISTORY LATEST #lobby * 1000")), 100)

    def test_event_playback(self):
        self.alice.send("CAP REQ draft/event-playback")
        self.alice.raw()
        self.alice.send("CHATHISTORY AFTER #lobby msgid=lobby:0 3")
        commands = [m.command for m in self.alice.messages()]
        self.assertEqual(commands, ["BATCH", "JOIN", "JOIN", "PRIVMSG", "BATCH"])

    def test_without_batch(self):
        self.bob.send("CHATHISTORY LATEST #lobby * 2")
        self.assertEqual([m.params[1] for m in self.bob.messages()], ["m9", "m10"])

    def test_errors(self):
        self.alice.send(
            "CHATHISTORY LATEST #nope * 5",
            "CHATHISTORY FOO #lobby",
            "CHATHISTORY BEFORE #lobby msgid=other:3 5",
            "CHATHISTORY BEFORE #lobby nonsense 5",
            "CHATHISTORY LATEST #lobby * many",
        )
        codes = [(m.command, m.params[1]) for m in self.alice.messages()]
        self.assertEqual(
            codes,
            [
                ("FAIL", "INVALID_TARGET"),
                ("FAIL", "INVALID_PARAMS"),
                ("FAIL", "INVALID_MSGREFTYPE"),
                ("FAIL", "INVALID_MSGREFTYPE"),
                ("FAIL", "INVALID_PARAMS"),
            ],
        )

    def test_labeled_history(self):
        """A labelled request wraps the history batch in a labelled batch."""
        self.alice.send("@label=h CHATHISTORY LATEST #lobby * 1")
        raw = self.alice.raw()
        messages = [parse_line(line) for line in raw.split(b"\r\n") if line]
        self.assertEqual(
            [m.command for m in messages], ["BATCH"] * 2 + ["PRIVMSG"] + ["BATCH"] * 2
        )
        self.assertEqual(messages[0].tags, {"label": "h"})
        # Nested batches: the inner batch belongs to the outer one, its
        # lines keep the inner reference, and no line has a tag twice.
        outer = messages[0].params[0][1:]
        inner = messages[1].params[0][1:]
        self.assertEqual(messages[1].tags["batch"], outer)
        self.assertEqual(messages[2].tags["batch"], inner)
        self.assertEqual(messages[3].tags["batch"], outer)
        self.assertNotIn("batch", messages[4].tags)
        for line in raw.split(b"\r\n"):
            self.assertLessEqual(line.split(b" ")[0].count(b"batch="), 1, line)


class RestartTests(SynchronousTestCase):
    """A new host on the same store continues numbering and topic."""

    def test_continues(self):
        store = HistoryStore(":memory:")
        host = make_host(store=store, limits=NO_FLOOD)
        alice = FakeClient(host).register("alice", ("message-tags",)).join()
        alice.send("TOPIC #lobby :kept", "PRIVMSG #lobby :one")
        alice.disconnect()
        host = make_host(store=store, limits=NO_FLOOD)
        bob = FakeClient(host).register("bob", ("message-tags",))
        bob.send("JOIN #lobby")
        join, topic, _, _, _ = bob.messages()
        self.assertEqual(join.tags["msgid"], "lobby:5")
        self.assertEqual(topic.params[2], "kept")


class CrashRestartTests(SynchronousTestCase):
    """A host that died without recording its members' QUITs (C{kill -9})
    records them when the next host opens the room, before anything else,
    so the history never shows a member joining twice."""

    HISTORY_CAPS = ("message-tags", "batch", "draft/chathistory")

    def crash(self, store):
        """Alice and carol in #lobby, alice renamed, then the host dies."""
        host = make_host(store=store, limits=NO_FLOOD)
        alice = FakeClient(host).register("alice").join()
        FakeClient(host).register("carol").join()
        alice.send("NICK alicia", "PRIVMSG #lobby :last words")
        # No disconnect: the process is gone, nothing more is stored.

    def history(self, host, caps=HISTORY_CAPS + ("draft/event-playback",)):
        reader = FakeClient(host).register("reader", caps)
        reader.send("CHATHISTORY LATEST #lobby * 100")
        return [
            m
            for m in reader.messages()
            if m.command not in ("BATCH",) and "msgid" in m.tags
        ]

    def test_quits_recorded(self):
        store = HistoryStore(":memory:")
        self.crash(store)
        self.assertEqual(
            store.present("lobby"),
            ["alicia!~alice@127.0.0.1", "carol!~carol@127.0.0.1"],
        )
        host = make_host(store=store, limits=NO_FLOOD)
        bob = FakeClient(host).register("bob", ("message-tags",))
        bob.send("JOIN #lobby")
        join = bob.messages()[0]
        events = [
            (m.tags["msgid"], m.command, m.prefix.split("!")[0], m.params)
            for m in self.history(host)
        ]
        self.assertEqual(
            events[-3:],
            [
                ("lobby:4", "QUIT", "alicia", ("Host restarted",)),
                ("lobby:5", "QUIT", "carol", ("Host restarted",)),
                ("lobby:6", "JOIN", "bob", ("#lobby",)),
            ],
        )
        self.assertEqual((join.command, join.tags["msgid"]), ("JOIN", "lobby:6"))
        self.assertEqual(store.present("lobby"), ["bob!~bob@127.0.0.1"])

    def test_once(self):
        """A second restart finds nobody left to record."""
        store = HistoryStore(":memory:")
        self.crash(store)
        make_host(store=store, limits=NO_FLOOD).clock.advance(0)
        self.assertEqual(store.last_seq("lobby"), 5)
        make_host(store=store, limits=NO_FLOOD).clock.advance(0)
        self.assertEqual(store.last_seq("lobby"), 5)

    def test_clean_stop_leaves_nobody(self):
        """Members who left (the host stopping closes every connection)
        get no second QUIT."""
        store = HistoryStore(":memory:")
        host = make_host(store=store, limits=NO_FLOOD)
        FakeClient(host).register("alice").join().disconnect()
        self.assertEqual(store.present("lobby"), [])
        make_host(store=store, limits=NO_FLOOD).clock.advance(0)
        self.assertEqual(store.last_seq("lobby"), 2)


class MemberInterfaceTests(SynchronousTestCase):
    """The connection provides everything IRoomMember promises the host."""

    def test_verify(self):
        from zope.interface.verify import verifyObject

        from chatroom.interfaces import IRoomMember

        client = FakeClient(make_host()).register("alice")
        self.assertTrue(verifyObject(IRoomMember, client.protocol))


class GhostTakeoverTests(SynchronousTestCase):
    """A client that comes back with the same client key (TLS client
    certificate) takes over its old connection at once."""

    def setUp(self):
        self.host = make_host(limits=NO_FLOOD)
        self.bob = FakeClient(self.host).register("bob").join()

    def connect(self, key):
        client = FakeClient(self.host)
        # What handshakeCompleted reads from the client's certificate.
        client.protocol.client_key = key
        return client

    def test_same_key_takes_over(self):
        ghost = self.connect(b"k" * 32).register("alice", ("message-tags",)).join()
        self.bob.raw()
        back = self.connect(b"k" * 32)
        back.send(
            "CAP LS 302",
            "CAP REQ :" + TAKEOVER_CAPABILITY,
            "NICK alice",
            "USER alice 0 * :Alice",
            "CAP END",
        )
        self.assertTrue(back.protocol.registered)
        error = [m for m in ghost.messages() if m.command == "ERROR"]
        self.assertIn("same client key", error[0].params[0])
        commands = back.commands()
        self.assertEqual(commands[:3], ["CAP", "CAP", "001"])  # LS, ACK
        self.assertEqual(commands[-3:], ["JOIN", "353", "366"])
        ghost.disconnect()
        self.assertEqual(self.bob.messages(), [])  # no QUIT, no JOIN
        self.assertIs(self.host.nick_owner("alice"), back.protocol)
        self.assertEqual(self.host.rooms_of(back.protocol), [self.host.rooms["lobby"]])
        self.bob.send("PRIVMSG #lobby :still here?")
        (message,) = back.messages()
        self.assertEqual(message.params, ("#lobby", "still here?"))
        self.assertEqual(self.host.counters["ghosts-taken-over"], 1)

    def test_same_key_without_asking_is_refused(self):
        """A second program of the same user (the same key, no takeover
        capability: C{chatroom say} while C{chatroom join} runs) gets
        C{433}; the connection that holds the nick stays, in its rooms."""
        alice = self.connect(b"k" * 32).register("alice").join()
        self.bob.raw()
        second = self.connect(b"k" * 32)
        second.send("NICK alice", "USER alice 0 * :Alice")
        self.assertEqual(second.commands(), ["433"])
        self.assertFalse(second.protocol.registered)
        self.assertIs(self.host.nick_owner("alice"), alice.protocol)
        self.assertEqual(alice.messages(), [])
        self.assertEqual(self.bob.messages(), [])
        self.assertNotIn("ghosts-taken-over", self.host.counters)

    def test_other_key_or_no_key_is_refused(self):
        self.connect(b"k" * 32).register("alice")
        for key in (b"x" * 32, None):
            other = self.connect(key)
            other.send("CAP REQ :" + TAKEOVER_CAPABILITY, "NICK alice")
            self.assertEqual(other.commands(), ["CAP", "433"])
        stock = FakeClient(self.host).register("carol")
        again = FakeClient(self.host)
        again.send("NICK carol")
        self.assertEqual(again.commands(), ["433"])
        self.assertTrue(stock.protocol.registered)
