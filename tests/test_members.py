"""One behaviour suite for every kind of room member.

The host treats members only through L{IRoomMember}.  These tests drive
the host's membership and delivery (L{RoomHost.join}, C{part}, C{kick},
C{quit}, C{submit}) and check what each member is shown; they are written
once and run against each member kind, as the transit relay runs one
suite per transport.
"""

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from chatroom.core.ircline import parse_line
from chatroom.core.room import NotAMember
from chatroom.host import Limits
from chatroom.interfaces import IRoomMember

from .fakes import FakeClient, FakeMember, FakeGroupSender, make_host


class MemberBehaviourMixin:
    """The behaviour every member kind shares.  Subclasses provide
    C{make_member(nick)} and C{shown(member)} (the parsed lines the member
    was shown since the last call)."""

    #: QUIT lines a member sharing two rooms with the quitter is shown: one
    #: over its own connection (the host sends each member one), one per
    #: room by multicast (a datagram carries each room's stored events).
    quit_lines = 1

    def setUp(self):
        self.host = make_host(rooms=("lobby", "dev"), limits=Limits(flood_rate=0))
        self.lobby = self.host.rooms["lobby"]
        self.dev = self.host.rooms["dev"]

    def turn(self):
        self.host.clock.advance(0)

    def join(self, member, room):
        """Put C{member} in C{room} through the host, as every kind joins."""
        self.host.join(member, room)
        self.turn()
        self.joined(member, room)

    def joined(self, member, room):
        """What a member kind does once it is in a room (nothing here)."""

    def post(self, member, room, text):
        self.host.submit(room.post(member, "PRIVMSG", text, self.host.now_ms()))

    def test_provides_interface(self):
        verifyObject(IRoomMember, self.make_member("alice"))

    def test_join_seen_by_everyone_in_room(self):
        alice, bob = self.make_member("alice"), self.make_member("bob")
        self.join(alice, self.lobby)
        self.turn()
        self.shown(alice)
        self.join(bob, self.lobby)
        self.turn()
        for member in (alice, bob):
            (join,) = [m for m in self.shown(member) if m.command == "JOIN"]
            self.assertEqual(join.prefix.split("!")[0], "bob")

    def test_one_order_for_everyone(self):
        """Every member sees the room's events in the same order."""
        alice, bob = self.make_member("alice"), self.make_member("bob")
        for member in (alice, bob):
            self.join(member, self.lobby)
        self.turn()
        self.shown(alice), self.shown(bob)
        for n in range(5):
            self.post(alice if n % 2 else bob, self.lobby, "m%d" % (n,))
        self.turn()
        everything = ["m0", "m1", "m2", "m3", "m4"]
        # Each member's own messages come back with echo-message only.
        for member, own in ((alice, {"m1", "m3"}), (bob, {"m0", "m2", "m4"})):
            expected = [t for t in everything if member.echo or t not in own]
            self.assertEqual([m.params[1] for m in self.shown(member)], expected)

    def test_part_ends_delivery(self):
        alice, bob = self.make_member("alice"), self.make_member("bob")
        for member in (alice, bob):
            self.join(member, self.lobby)
        self.host.part(bob, self.lobby, "bye")
        self.turn()
        self.assertEqual([m.command for m in self.shown(bob)][-1], "PART")
        self.post(alice, self.lobby, "after")
        self.turn()
        self.assertEqual(self.shown(bob), [])
        self.assertNotIn(bob, self.lobby)
        self.assertEqual(self.host.rooms_of(bob), [])
        self.assertRaises(NotAMember, self.host.part, bob, self.lobby, None)

    def test_kick_changes_both_sides(self):
        alice, bob = self.make_member("alice"), self.make_member("bob")
        self.lobby.opened = True  # the first to join an opened room is op
        for member in (alice, bob):
            self.join(member, self.lobby)
        self.join(bob, self.dev)
        self.host.kick(alice, self.lobby, bob, "behave")
        self.turn()
        self.assertEqual(self.host.rooms_of(bob), [self.dev])
        self.assertNotIn(bob, self.lobby)
        kick = [m for m in self.shown(bob) if m.command == "KICK"]
        self.assertEqual(kick[0].params, ("#lobby", "bob", "behave"))

    def test_quit_leaves_every_room_once(self):
        """One QUIT line per member who shared a room, a stored event per
        room, and the nick is free again."""
        alice, bob = self.make_member("alice"), self.make_member("bob")
        for room in (self.lobby, self.dev):
            for member in (alice, bob):
                self.join(member, room)
        self.turn()
        self.shown(alice)
        self.host.quit(bob, "gone")
        self.turn()
        self.assertEqual(
            [(m.command, m.params) for m in self.shown(alice)],
            [("QUIT", ("gone",))] * self.quit_lines,
        )
        self.assertEqual(self.host.rooms_of(bob), [])
        self.assertEqual((self.lobby.members, self.dev.members), ((alice,), (alice,)))
        self.assertIsNone(self.host.nick_owner("bob"))
        stored = self.host.store.between("lobby", 0, 10**9, 100, False, False)
        self.assertEqual(stored[-1].command, "QUIT")


class FakeMemberTests(MemberBehaviourMixin, SynchronousTestCase):
    """The suite against the in-memory member."""

    def make_member(self, nick):
        member = FakeMember(nick)
        self.host.claim_nick(member, None, nick)
        return member

    def shown(self, member):
        data, member.received = b"".join(member.received), []
        return [parse_line(line) for line in data.split(b"\r\n") if line]


class ConnectionMemberTests(MemberBehaviourMixin, SynchronousTestCase):
    """The suite against the IRC connection (the TLS member)."""

    def make_member(self, nick):
        client = FakeClient(self.host).register(nick)
        client.protocol.test_client = client
        return client.protocol

    def shown(self, member):
        return member.test_client.messages()


class MulticastMemberTests(MemberBehaviourMixin, SynchronousTestCase):
    """The suite against a connection that takes the room's events by
    multicast: what it is shown is its TLS lines and the datagrams it can
    open with the keys it was given, merged by sequence number."""

    quit_lines = 2

    def setUp(self):
        super().setUp()
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (
            Ed25519PrivateKey,
        )
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            PublicFormat,
        )

        from chatroom.fanout import HostFanout

        key = Ed25519PrivateKey.generate()
        self.q = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.socket = FakeGroupSender()
        self.host.fanout = HostFanout(self.host, key, self.q, self.socket)

    def make_member(self, nick):
        from chatroom.core.fanout import CAPABILITY

        client = FakeClient(self.host).register(
            nick, ("message-tags", "server-time", "echo-message", CAPABILITY)
        )
        client.protocol.test_client = client
        client.keys = {}
        client.datagrams = 0
        client.pending = []
        return client.protocol

    def joined(self, member, room):
        from chatroom.core.fanout import KeyGrant

        self.host.fanout.member_joined(member, room)
        client = member.test_client
        messages = client.messages()
        client.pending += [m for m in messages if m.command != "FANOUT"]
        (key,) = [m for m in messages if m.command == "FANOUT"]
        grant = KeyGrant.from_params(key.params)
        client.keys.setdefault(grant.room, []).append(grant.epoch_key)
        client.send("FANOUT %s START %d" % (room.channel, grant.epoch_key.epoch))
        client.messages()  # MODE MULTICAST
        self.assertTrue(room.on_multicast(member))

    def shown(self, member):
        from chatroom.core.errors import ParseError
        from chatroom.core.fanout import (
            Datagram,
            KeyGrant,
            RoomIdentity,
            open_datagram,
        )
        from chatroom.core.names import parse_msgid

        client = member.test_client
        lines, client.pending = client.pending, []
        for message in client.messages():
            if message.command == "FANOUT" and message.params[1] == "KEY":
                grant = KeyGrant.from_params(message.params)
                client.keys[grant.room] = client.keys.get(grant.room, []) + [
                    grant.epoch_key
                ]
            else:
                lines.append(message)
        for data in self.socket.sent[client.datagrams :]:
            datagram = Datagram.from_bytes(data)
            for room, keys in client.keys.items():
                for key in keys:
                    try:
                        opened = open_datagram(
                            datagram, RoomIdentity(self.q, room), key
                        )
                    except ParseError:
                        continue
                    lines += [parse_line(line) for line in opened.lines if line]
        client.datagrams = len(self.socket.sent)
        seen, ordered = set(), []
        for message in lines:
            msgid = message.tags.get("msgid")
            if msgid is not None:
                if msgid in seen:
                    continue
                seen.add(msgid)
            ordered.append(message)
        ordered.sort(
            key=lambda m: (
                parse_msgid(m.tags["msgid"])[1] if "msgid" in m.tags else 1 << 62
            )
        )
        return ordered
