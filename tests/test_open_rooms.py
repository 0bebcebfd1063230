"""Rooms opened on demand (--open-rooms) and their moderation."""

import os

from twisted.trial.unittest import SynchronousTestCase

from chatroom.history import HistoryStore
from chatroom.host import Limits

from .fakes import FakeClient, make_host

OPEN = Limits(flood_rate=0, open_rooms=True)


class RecordingObserver:
    """Records the rooms the host opens and removes."""

    def __init__(self):
        self.opened = []
        self.removed = []

    def room_opened(self, room):
        self.opened.append(room.channel)

    def room_removed(self, room):
        self.removed.append(room.channel)


class OpeningTests(SynchronousTestCase):
    """JOIN creates, the creator is operator, limits answer with numerics."""

    def setUp(self):
        self.observer = RecordingObserver()
        self.host = make_host(rooms=(), limits=OPEN)
        self.host.observer = self.observer
        self.alice = FakeClient(self.host).register("alice")
        self.bob = FakeClient(self.host).register("bob")

    def test_join_creates_and_creator_is_op(self):
        self.alice.send("JOIN #NewRoom")
        join, names, end = self.alice.messages()
        self.assertEqual(join.params, ("#NewRoom",))
        self.assertEqual(names.params[-1], "@alice")
        self.assertEqual(self.observer.opened, ["#NewRoom"])
        self.bob.send("JOIN #newroom")
        join, names, end = self.bob.messages()
        self.assertEqual(join.params, ("#NewRoom",))
        self.assertEqual(names.params[-1], "@alice bob")
        self.assertEqual(self.observer.opened, ["#NewRoom"])
        self.assertEqual(list(self.host.rooms), ["newroom"])

    def test_without_open_rooms_403(self):
        host = make_host(rooms=("lobby",), limits=Limits(flood_rate=0))
        client = FakeClient(host).register("carol")
        client.send("JOIN #other")
        self.assertEqual(client.commands(), ["403"])

    def test_bad_names(self):
        for channel in ("#", "#a b", "#" + "x" * 33, "#caf\u00e9", "lobby"):
            self.alice.send("JOIN :" + channel)
            self.assertEqual(self.alice.commands(), ["479"], channel)
        self.assertEqual(self.host.rooms, {})

    def test_max_rooms(self):
        host = make_host(
            rooms=("lobby",), limits=Limits(flood_rate=0, open_rooms=True, max_rooms=2)
        )
        client = FakeClient(host).register("carol")
        client.send("JOIN #one")
        client.raw()
        client.send("JOIN #two")
        (reply,) = client.messages()
        self.assertEqual((reply.command, reply.params[1]), ("437", "#two"))
        self.assertIn("more rooms", reply.params[2])

    def test_opened_per_hour(self):
        host = make_host(
            rooms=(),
            limits=Limits(
                flood_rate=0,
                open_rooms=True,
                opened_per_hour=2,
                ping_after=10**6,
                close_after=10**6,
            ),
        )
        client = FakeClient(host).register("carol")
        client.send("JOIN #a,#b,#c")
        self.assertEqual([m.command for m in client.messages()].count("JOIN"), 2)
        self.assertEqual(host.counters["refused-open-rate"], 1)
        host.clock.advance(1800)
        client.send("JOIN #c")
        self.assertEqual(client.commands()[0], "JOIN")

    def test_isupport(self):
        client = FakeClient(self.host)
        client.send("NICK carol", "USER c 0 * :C")
        tokens = " ".join(
            " ".join(m.params) for m in client.messages() if m.command == "005"
        )
        for token in ("CHANMODES=b,k,l,Cimnst", "PREFIX=(ov)@+", "CHANNELLEN=33"):
            self.assertIn(token, tokens)


class ModerationTests(SynchronousTestCase):
    """KICK, +t, +i with INVITE, +k, +o; MODE queries."""

    def setUp(self):
        self.host = make_host(rooms=(), limits=OPEN)
        self.alice = FakeClient(self.host).register("alice").join("#fun")
        self.bob = FakeClient(self.host).register("bob").join("#fun")
        self.alice.raw()

    def test_mode_query(self):
        self.alice.send("MODE #fun")
        modes, created = self.alice.messages()
        self.assertEqual((modes.command, modes.params[1:]), ("324", ("#fun", "+n")))
        self.assertEqual(
            (created.command, created.params[1:]), ("329", ("#fun", str(1764000000)))
        )

    def test_topic_lock(self):
        self.alice.send("MODE #fun +t")
        (mode,) = self.bob.messages()
        self.assertEqual((mode.command, mode.params), ("MODE", ("#fun", "+t")))
        self.bob.send("TOPIC #fun :mine")
        self.assertEqual(self.bob.commands(), ["482"])
        self.alice.raw()
        self.alice.send("TOPIC #fun :ours")
        self.assertEqual(self.bob.commands(), ["TOPIC"])

    def test_only_ops_change_modes(self):
        self.bob.send("MODE #fun +i", "KICK #fun alice")
        self.assertEqual(self.bob.commands(), ["482", "482"])

    def test_kick(self):
        self.alice.send("KICK #fun bob :behave")
        (kick,) = self.bob.messages()
        self.assertEqual(
            (kick.command, kick.prefix.split("!")[0], kick.params),
            ("KICK", "alice", ("#fun", "bob", "behave")),
        )
        self.assertNotIn(self.bob.protocol, self.host.rooms["fun"])
        self.assertEqual(self.host.rooms_of(self.bob.protocol), [])
        self.bob.send("PRIVMSG #fun :hey")
        self.assertEqual(self.bob.commands(), ["404"])
        self.alice.send("KICK #fun nobody")
        self.assertEqual(self.alice.commands(), ["KICK", "441"])

    def test_invite_only(self):
        self.alice.send("MODE #fun +i")
        carol = FakeClient(self.host).register("carol")
        carol.send("JOIN #fun")
        self.assertEqual(carol.commands(), ["473"])
        self.bob.send("INVITE carol #fun")
        self.assertEqual(self.bob.commands()[-1], "482")
        self.alice.raw()
        self.alice.send("INVITE carol #fun")
        self.assertEqual(self.alice.commands(), ["341"])
        (invite,) = carol.messages()
        self.assertEqual((invite.command, invite.params), ("INVITE", ("carol", "#fun")))
        carol.send("JOIN #fun")
        self.assertEqual(carol.commands()[0], "JOIN")

    def test_key(self):
        self.alice.send("MODE #fun +k s3cret")
        carol = FakeClient(self.host).register("carol")
        carol.send("JOIN #fun", "JOIN #fun wrong")
        self.assertEqual(carol.commands(), ["475", "475"])
        carol.send("JOIN #fun s3cret")
        self.assertEqual(carol.commands()[0], "JOIN")
        self.alice.raw()
        self.alice.send("MODE #fun")
        self.assertEqual(self.alice.messages()[0].params[2:], ("+nk", "s3cret"))

    def test_give_op(self):
        self.alice.send("MODE #fun +o bob")
        (mode,) = self.bob.messages()
        self.assertEqual(mode.params, ("#fun", "+o", "bob"))
        self.bob.send("MODE #fun +t-o alice")
        self.assertEqual(self.bob.messages()[0].params, ("#fun", "+t-o", "alice"))
        self.alice.send("MODE #fun -t")
        self.assertEqual(self.alice.commands()[-1], "482")

    def test_unknown_mode_and_missing_param(self):
        self.alice.send("MODE #fun +z", "MODE #fun +k")
        self.assertEqual(self.alice.commands(), ["472", "461"])

    def test_op_passes_when_room_empties(self):
        """Whoever joins an empty opened room becomes its operator."""
        self.alice.send("PART #fun")
        self.bob.send("PART #fun")
        self.bob.send("JOIN #fun")
        self.assertEqual(self.bob.messages()[-2].params[-1], "@bob")


class PersistenceTests(SynchronousTestCase):
    """Opened rooms come back after a restart, and idle ones go."""

    def test_restart_keeps_room_history_topic_modes(self):
        path = os.path.join(self.mktemp())
        store = HistoryStore(path)
        host = make_host(rooms=(), limits=OPEN, store=store)
        alice = FakeClient(host).register("alice", ("message-tags",)).join("#fun")
        alice.send("TOPIC #fun :kept", "MODE #fun +t", "PRIVMSG #fun :hello")
        store.close()

        observer = RecordingObserver()
        store = HistoryStore(path)
        self.addCleanup(store.close)
        host = make_host(rooms=(), limits=OPEN, store=store)
        host.observer = observer
        self.assertEqual(list(host.rooms), ["fun"])
        room = host.rooms["fun"]
        # Alice never left (the store was closed under her): her QUIT,
        # "Host restarted", takes number 5.
        self.assertEqual(
            (room.topic.text, room.modes, room.next_seq), ("kept", {"n", "t"}, 6)
        )

        closed = make_host(rooms=(), limits=Limits(), store=store)
        self.assertEqual(closed.rooms, {})

    def test_idle_rooms_removed(self):
        observer = RecordingObserver()
        host = make_host(
            rooms=("lobby",),
            limits=Limits(flood_rate=0, open_rooms=True, room_idle_seconds=100),
        )
        host.observer = observer
        alice = FakeClient(host).register("alice").join("#busy").join("#old")
        FakeClient(host).register("bob").join("#quiet").disconnect()
        host.clock.advance(50)
        alice.send("PRIVMSG #old :still talking")
        host.clock.advance(60)
        alice.send("PONG x")
        self.assertEqual([r.channel for r in host.remove_idle_rooms()], ["#quiet"])
        self.assertEqual(observer.removed, ["#quiet"])
        self.assertEqual(sorted(host.rooms), ["busy", "lobby", "old"])
        self.assertEqual(host.store.opened_rooms(), ["busy", "old"])
