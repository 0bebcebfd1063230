"""A room's fan-out end to end in the pure core: host sender, members'
receivers, a lossy datagram network and ordered TLS queues, all simulated
with a fake clock.  Loss, bursts, rotation, post-removal secrecy, and a
hypothesis state machine over all of it."""

from __future__ import annotations

import collections
import random
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from twisted.trial.unittest import SynchronousTestCase

from chatroom.core import fanout as f
from chatroom.core import fanout_receiver as r
from chatroom.core import fanout_sender as s
from chatroom.core.discovery import raw_public_key
from chatroom.core.errors import ParseError

HOST_KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
ROOM = f.RoomIdentity(raw_public_key(HOST_KEY), "lobby")
LEAVES = ("PART", "QUIT", "KICK", "timeout", "dropped")
"""Every way of leaving.  PART and KICK keep the connection (the leaver
sees its own leave event over TLS); the others lose it."""


class SimMember:
    """A member's client: its receiver, what it showed, its TLS queue."""

    def __init__(self, name: str, joined: int) -> None:
        self.name = name
        self.joined = joined
        self.left: int | None = None
        self.connected = True
        self.receiver: r.FanoutReceiver | None = None
        self.shown: list[int] = []
        self.tls: collections.deque[tuple[Any, ...]] = collections.deque()
        self.keys: list[f.EpochKey] = []
        self.modes: list[str] = []


class SimRoom:
    """One room on one host, its members, and the network between them.

    ``loss`` is the chance that one member misses one datagram.
    """

    def __init__(
        self, seed: int, loss: float = 0.0, sender_args: dict[str, Any] | None = None
    ) -> None:
        self.rng = random.Random(seed)
        self.loss = loss
        self.now = 0.0
        self.sender = s.FanoutSender(
            HOST_KEY,
            ROOM,
            "239.255.67.70",
            47668,
            self.rng.randbytes,
            **(sender_args or {}),
        )
        self.seq = 0
        self.history: dict[int, bytes] = {}
        self.members: dict[str, SimMember] = {}
        self.in_room: set[str] = set()
        self.turn: list[tuple[int, bytes, set[str]]] = []
        self.joining: list[str] = []
        self.net: list[bytes] = []
        self.sent: list[bytes] = []
        self.burst = 0
        self.asked: collections.Counter[str] = collections.Counter()

    # -- the host's room

    def post(self, text: str, recipients: set[str]) -> int:
        """Number, store and queue a room event; return its number."""
        self.seq += 1
        line = b"@time=2026-11-30T12:00:00.000Z;msgid=lobby:%d %s" % (
            self.seq,
            text.encode(),
        )
        self.history[self.seq] = line
        self.turn.append((self.seq, line, set(recipients)))
        return self.seq

    def join(self, name: str) -> None:
        """``name`` joins (its key follows the turn's flush)."""
        self.in_room.add(name)
        seq = self.post(":%s!u@h JOIN #lobby" % name, self.in_room)
        self.members[name] = SimMember(name, seq)
        self.joining.append(name)

    def say(self, name: str, text: str = "hello") -> int:
        """``name`` says something."""
        return self.post(":%s!u@h PRIVMSG #lobby :%s" % (name, text), self.in_room)

    def leave(self, name: str, how: str) -> int:
        """``name`` leaves the room in one of the LEAVES ways."""
        member = self.members[name]
        keeps = how in ("PART", "KICK")
        recipients = set(self.in_room) if keeps else self.in_room - {name}
        text = {
            "PART": ":%s!u@h PART #lobby",
            "KICK": ":op!u@h KICK #lobby %s :bye",
            "QUIT": ":%s!u@h QUIT :Quit: bye",
            "timeout": ":%s!u@h QUIT :Ping timeout",
            "dropped": ":%s!u@h QUIT :Connection reset",
        }[how] % name
        seq = self.post(text, recipients)
        self.in_room.discard(name)
        member.left = seq
        self.handle(self.sender.member_left(name, seq))
        if not keeps:
            member.connected = False
            member.tls.clear()
        return seq

    def flush(self) -> None:
        """End of the reactor turn: TLS delivery, then fan-out."""
        for seq, line, recipients in self.turn:
            for name in recipients:
                member = self.members[name]
                if member.connected and not self.sender.is_multicast(name):
                    member.tls.append(("event", seq, line))
        events = [(seq, line) for seq, line, _ in self.turn]
        self.turn = []
        self.handle(self.sender.flush(self.now, events))
        for name in self.joining:
            if name in self.in_room:
                self.handle(self.sender.member_joined(name, self.now))
        self.joining = []

    def handle(self, actions: list[s.SenderAction]) -> None:
        """Perform the host's actions."""
        for action in actions:
            if isinstance(action, s.SendKey):
                self._tls(action.member, ("key", action.grant))
            elif isinstance(action, s.SendMode):
                self._tls(action.member, ("mode", action.change))
            elif isinstance(action, s.SendDatagram):
                self.sent.append(action.data)
                self.net.append(action.data)
            elif isinstance(action, s.SendEvents):
                for name in action.members:
                    for seq, line in action.events:
                        self._tls(name, ("event", seq, line))
            elif isinstance(action, s.SendRepair):
                for seq, line in action.events:
                    self._tls(action.member, ("event", seq, line))
                for first, last in action.uncached:
                    for seq in range(first, last + 1):
                        if seq in self.history:
                            self._tls(action.member, ("event", seq, self.history[seq]))
                self._tls(action.member, ("repaired", action.ranges))
            else:
                raise AssertionError(action)

    def _tls(self, name: Any, item: tuple[Any, ...]) -> None:
        member = self.members[name]
        if member.connected:
            member.tls.append(item)

    # -- the members' side

    def member_actions(self, member: SimMember, actions: list[r.Action]) -> None:
        """Perform a member's actions: show, or send up over TLS."""
        for action in actions:
            if isinstance(action, r.Deliver):
                assert action.line == self.history[action.seq]
                member.shown.append(action.seq)
            elif isinstance(action, r.SendRequest):
                self.asked[action.request.verb] += 1
                if member.connected and member.name in self.in_room:
                    self.handle(
                        self.sender.request(member.name, action.request, self.now)
                    )
            elif isinstance(action, r.RequestHistory):
                self.asked["CHATHISTORY"] += 1
                if member.connected:
                    events = [
                        (q, self.history[q])
                        for q in sorted(self.history)
                        if q > action.after
                    ][: action.limit]
                    member.tls.append(("history", action.after, events, action.limit))
            elif isinstance(action, r.ModeReport):
                member.modes.append(action.mode)

    def tls_step(self, member: SimMember) -> bool:
        """Process one line of ``member``'s TLS queue."""
        if not member.tls:
            return False
        item = member.tls.popleft()
        receiver = member.receiver
        if item[0] == "event":
            if receiver is None:
                member.shown.append(item[1])
            else:
                self.member_actions(
                    member, receiver.tls_event(item[1], item[2], self.now)
                )
        elif item[0] == "key":
            member.keys.append(item[1].epoch_key)
            if receiver is None:
                next_seq = (member.shown[-1] if member.shown else member.joined - 1) + 1
                member.receiver = r.FanoutReceiver(
                    ROOM, item[1], next_seq, self.now, self.rng.random
                )
            else:
                self.member_actions(member, receiver.key_received(item[1], self.now))
        elif receiver is None:
            raise AssertionError("%r before the key" % (item,))
        elif item[0] == "mode":
            self.member_actions(member, receiver.mode_changed(item[1], self.now))
        elif item[0] == "repaired":
            self.member_actions(member, receiver.repaired(item[1], self.now))
        elif item[0] == "history":
            self.member_actions(
                member, receiver.history_batch(item[1], item[2], item[3], self.now)
            )
        return True

    def deliver_datagram(self, data: bytes) -> None:
        """One datagram reaches every listening member (departed ones keep
        listening with their old keys), each missing it with ``loss``."""
        for member in self.members.values():
            if member.receiver is None:
                continue
            if self.burst or self.rng.random() < self.loss:
                continue
            self.member_actions(
                member, member.receiver.datagram_received(data, self.now)
            )
        if self.burst:
            self.burst -= 1

    def pump(self) -> None:
        """Deliver everything in flight, in order."""
        for _ in range(10000):
            if self.net:
                self.deliver_datagram(self.net.pop(0))
                continue
            if not any([self.tls_step(m) for m in self.members.values()]):
                return
        raise AssertionError("pump does not end")

    def wake_at(self) -> float | None:
        """The earliest timer of the host and the members."""
        times = [self.sender.wake_at]
        times += [
            m.receiver.wake_at
            for m in self.members.values()
            if m.receiver is not None and m.name in self.in_room
        ]
        present = [t for t in times if t is not None]
        return min(present) if present else None

    def advance(self, to: float) -> None:
        """Move the clock and fire every timer that is due."""
        self.now = max(self.now, to)
        self.handle(self.sender.flush(self.now))
        for member in self.members.values():
            if member.receiver is not None:
                self.member_actions(member, member.receiver.tick(self.now))

    def expected(self, member: SimMember) -> list[int]:
        """What ``member`` must show: from its join to its leave (its own
        PART or KICK included), or to the end."""
        last = self.seq if member.left is None else member.left
        seqs = list(range(member.joined, last + 1))
        if member.left is not None and not member.connected:
            seqs.pop()  # a QUIT is not shown to the one who quit
        return seqs

    def caught_up(self) -> bool:
        """Every member in the room has shown every event so far."""
        return all(
            self.members[n].shown == self.expected(self.members[n])
            for n in self.in_room
        )

    def settle(self, max_steps: int = 3000) -> int:
        """Run network and timers until every member has caught up; return
        the simulated seconds it took."""
        start = self.now
        for _ in range(max_steps):
            self.pump()
            if self.caught_up():
                return int(self.now - start)
            when = self.wake_at()
            assert when is not None, "stuck with nothing to wait for"
            self.advance(when)
        raise AssertionError(
            "the room did not settle: %r"
            % {
                n: (self.members[n].shown[-3:], self.expected(self.members[n])[-3:])
                for n in self.in_room
            }
        )

    # -- checks

    def check_order(self) -> None:
        """Total order and exactly-once: everyone has shown a prefix of
        what it must show, nothing twice, nothing out of order."""
        for member in self.members.values():
            expected = self.expected(member)
            assert member.shown == expected[: len(member.shown)], (
                member.name,
                member.shown[-5:],
                expected[: len(member.shown)][-5:],
            )

    def check_secrecy(self) -> None:
        """No key a departed member ever held opens an event sent at or
        after its leave event."""
        for member in self.members.values():
            if member.left is None:
                continue
            for data in self.sent:
                datagram = f.Datagram.from_bytes(data)
                for key in member.keys:
                    if key.epoch != datagram.epoch:
                        continue
                    try:
                        opened = f.open_datagram(datagram, ROOM, key)
                    except ParseError:
                        continue
                    if opened.kind == f.KIND_DATA:
                        assert opened.last_seq < member.left, (
                            member.name,
                            opened.seq,
                            member.left,
                        )


class LossTests(SynchronousTestCase):
    """Every event reaches every multicast member once, in order, despite
    loss, repaired over TLS or by re-multicast."""

    def room_of(
        self, n: int, seed: int, loss: float = 0.0, **sender_args: Any
    ) -> SimRoom:
        """A room with ``n`` members, all switched to multicast."""
        room = SimRoom(seed, loss, sender_args)
        for i in range(n):
            room.join("m%d" % i)
        room.flush()
        room.pump()
        room.say("m0", "first")
        room.flush()
        room.settle()
        for _ in range(20):
            if all(
                m.receiver.mode == "multicast"  # type: ignore[union-attr]
                for m in room.members.values()
            ):
                break
            room.advance(room.now + 0.5)
            room.pump()
        for member in room.members.values():
            self.assertEqual(
                member.receiver.mode,  # type: ignore[union-attr]
                "multicast",
            )
        return room

    def test_random_loss(self) -> None:
        """10% independent loss per member and datagram, 300 events in
        turns of 1-5: all shown exactly once, in order."""
        room = self.room_of(5, seed=1, loss=0.10)
        rng = random.Random(2)
        for turn in range(100):
            for _ in range(rng.randint(1, 5)):
                room.say("m%d" % rng.randrange(5), "x" * rng.randrange(300))
            room.flush()
            room.advance(room.now + 0.01)
            room.pump()
            room.check_order()
        room.settle()
        room.check_order()
        for member in room.members.values():
            self.assertEqual(member.shown, room.expected(member))
            self.assertEqual(member.receiver.mode, "multicast")  # type: ignore[union-attr]
        self.assertGreater(room.asked["REPAIR"], 10)
        self.assertGreater(room.sender.policy.counts["tls"], 0)

    def test_burst_of_50(self) -> None:
        """50 datagrams in a row lost by every member: each member asks,
        the host re-multicasts them once instead of once per member."""
        room = self.room_of(6, seed=3)
        room.burst = 50
        for i in range(50):
            room.say("m1", "burst %d" % i)
            room.flush()
            room.pump()
            room.advance(room.now + 0.001)
        self.assertEqual(room.burst, 0)
        room.say("m2", "after")
        room.flush()
        room.settle()
        room.check_order()
        for member in room.members.values():
            self.assertEqual(member.shown, room.expected(member))
        self.assertGreaterEqual(room.sender.policy.counts["remulticast"], 50)
        self.assertGreater(room.sender.counts["remulticast-datagrams"], 0)
        self.assertLess(room.sender.policy.counts["tls"], 6 * 50 / 4)

    def test_no_answer_implosion(self) -> None:
        """30 members lose the same 20 datagrams: the host sends them to the
        group once more instead of 600 answers over TLS."""
        room = self.room_of(30, seed=9)
        before = room.sender.counts["datagrams"]
        room.burst = 20
        for i in range(20):
            room.say("m0", "lost %d" % i)
            room.flush()
            room.pump()
        room.settle()
        room.check_order()
        for member in room.members.values():
            self.assertEqual(member.shown, room.expected(member))
        self.assertEqual(room.sender.policy.counts["remulticast"], 20)
        self.assertLess(room.sender.policy.counts["tls"], 30)
        # The 20 originals, and the repairs in a few datagrams.
        self.assertLessEqual(room.sender.counts["datagrams"] - before, 25)

    def test_big_gap_uses_history(self) -> None:
        """A member that misses more than 1000 events catches up with
        CHATHISTORY and shows everything once."""
        room = self.room_of(2, seed=4)
        room.burst = 2000
        for i in range(1200):
            room.say("m0", "flood %d" % i)
            if i % 10 == 9:
                room.flush()
                room.pump()
                room.advance(room.now + 0.05)
        room.burst = 0
        room.flush()
        room.settle()
        room.check_order()
        for member in room.members.values():
            self.assertEqual(member.shown, room.expected(member))
        self.assertGreaterEqual(room.asked["CHATHISTORY"], 2)
        self.assertGreater(room.asked["REPAIR"], 0)

    def test_tail_loss_found_by_heartbeat(self) -> None:
        """The last datagram of a burst is lost; the heartbeat reveals it."""
        room = self.room_of(3, seed=5)
        room.say("m0", "lost")
        room.burst = 1
        room.flush()
        room.pump()
        room.check_order()
        self.assertFalse(room.caught_up())
        took = room.settle()
        self.assertLess(took, 2)
        self.assertEqual(room.members["m1"].shown[-1], room.seq)

    def test_silence_fallback_loses_nothing(self) -> None:
        """When datagrams stop (no multicast route any more), members fall
        back to TLS and lose nothing; the events keep coming."""
        room = self.room_of(3, seed=6)
        room.loss = 1.0
        for i in range(10):
            room.say("m0", "during %d" % i)
            room.flush()
            room.advance(room.now + 1.0)
            room.pump()
        room.settle()
        for member in room.members.values():
            self.assertEqual(member.shown, room.expected(member))
            self.assertEqual(member.receiver.mode, "tls")  # type: ignore[union-attr]
            self.assertIn("tls", member.modes)
        room.say("m1", "still here")
        room.flush()
        room.settle()
        self.assertEqual(room.members["m2"].shown[-1], room.seq)

    def test_oversized_event_over_tls(self) -> None:
        """An event too big for a datagram reaches multicast members over
        TLS, in order, and nobody asks for it as a repair."""
        room = self.room_of(3, seed=7)
        room.say("m0", "y" * 2000)
        room.say("m0", "small")
        room.flush()
        room.settle()
        room.check_order()
        self.assertEqual(room.sender.counts["over-tls"], 1)
        self.assertEqual(room.sender.policy.counts["tls"], 0)
        for name in ("m1", "m2"):
            self.assertEqual(room.members[name].shown[-2:], [room.seq - 1, room.seq])

    def test_pacing(self) -> None:
        """A flood of events is paced to the burst and then 200 datagrams a
        second per room, and still arrives complete."""
        room = self.room_of(2, seed=8, max_backlog=5000)
        for i in range(3000):
            room.say("m0", "z" * 400)
        room.flush()
        self.assertLessEqual(len(room.net), s.SEND_BURST)
        self.assertGreater(room.sender.wake_at, room.now)
        start = room.now
        room.settle()
        datagrams = room.sender.counts["datagrams"]
        self.assertGreater(datagrams, 3 * s.SEND_BURST)
        self.assertGreaterEqual(
            room.now - start, (datagrams - 2 * s.SEND_BURST) / s.SEND_RATE
        )
        for member in room.members.values():
            self.assertEqual(member.shown, room.expected(member))
            self.assertEqual(member.receiver.drops["rate-limited"], 0)  # type: ignore[union-attr]

    def test_backlog_bound(self) -> None:
        """Past the backlog bound the oldest waiting events are left out of
        multicast; members fetch them over TLS and still show everything
        once, in order, and the host never multicasts them again, even
        when every member asks."""
        room = self.room_of(4, seed=9, max_backlog=100)
        for i in range(400):
            room.say("m0", "w" * 400)
        room.flush()
        # 400 new events, 100 kept waiting: the oldest 300 are left out.
        self.assertEqual(room.sender.counts["backlog-skipped"], 300)
        room.settle()
        for member in room.members.values():
            self.assertEqual(member.shown, room.expected(member))
        self.assertEqual(room.sender.counts["remulticast-datagrams"], 0)


class SecrecyTests(SynchronousTestCase):
    """A departed member's keys open nothing sent after it left."""

    def test_each_way_of_leaving(self) -> None:
        """For PART, QUIT, KICK, ping timeout and a dropped connection: the
        leaver keeps listening with every key it had and shows nothing from
        its leave on; the others get a new key and everything."""
        for how in LEAVES:
            room = SimRoom(seed=10)
            for name in ("alice", "bob", "carol"):
                room.join(name)
            room.flush()
            room.settle()
            room.say("alice", "before")
            room.flush()
            room.settle()
            left = room.leave("bob", how)
            room.say("alice", "after, same turn")
            room.flush()
            for i in range(5):
                room.say("carol", "after %d" % i)
                room.flush()
                room.pump()
            room.settle()
            room.check_order()
            room.check_secrecy()
            # Datagrams under the new key overtook the KEY line (the
            # simulated network is faster than TLS): they were held, not
            # lost, so nobody needed a repair.
            self.assertEqual(room.asked["REPAIR"], 0, how)
            self.assertEqual(
                room.members["alice"].receiver.drops[  # type: ignore[union-attr]
                    "key-late"
                ],
                0,
                how,
            )
            bob = room.members["bob"]
            self.assertTrue(all(seq <= left for seq in bob.shown), how)
            if how in ("PART", "KICK"):
                self.assertEqual(bob.shown[-1], left, how)
            room.advance(room.now + r.HOLD_TIME)
            self.assertGreater(bob.receiver.drops["key-late"], 0, how)  # type: ignore[union-attr]
            for name in ("alice", "carol"):
                member = room.members[name]
                self.assertEqual(member.shown, room.expected(member), how)
                self.assertEqual([k.epoch for k in member.keys], [1, 2], how)
            self.assertEqual([k.epoch for k in bob.keys], [1], how)

    def test_departures_in_one_turn_share_a_rotation(self) -> None:
        """Two members leaving in the same turn cause one rotation from the
        first leave; the later leaver still shows what was said between
        (over TLS), and neither can open anything after its leave."""
        room = SimRoom(seed=11)
        for name in ("alice", "bob", "carol", "dave"):
            room.join(name)
        room.flush()
        room.settle()
        room.leave("bob", "PART")
        room.say("alice", "bob is gone, carol still here")
        room.leave("carol", "PART")
        room.say("alice", "both gone")
        room.flush()
        room.settle()
        room.check_order()
        room.check_secrecy()
        self.assertEqual(room.sender.counts["rotations"], 1)
        carol = room.members["carol"]
        self.assertEqual(carol.shown, room.expected(carol))
        self.assertEqual([k.epoch for k in room.members["dave"].keys], [1, 2])


class SenderTests(SynchronousTestCase):
    """Host-side details: one signature per datagram whatever the
    membership, key erasure, repair aggregation."""

    def test_cost_independent_of_members(self) -> None:
        """The datagrams of a turn are the same in number for 2 and 200
        members."""
        counts = []
        for n in (2, 200):
            room = SimRoom(seed=12)
            for i in range(n):
                room.join("m%d" % i)
            room.flush()
            before = room.sender.counts["datagrams"]
            for _ in range(20):
                room.say("m0")
            room.flush()
            counts.append(room.sender.counts["datagrams"] - before)
        self.assertEqual(counts[0], counts[1])
        self.assertLessEqual(counts[0], 2)

    def test_old_keys_erased(self) -> None:
        """After a rotation the host holds only the current key once the
        old epoch's events are sealed."""
        room = SimRoom(seed=13)
        for name in ("a", "b"):
            room.join(name)
        room.flush()
        room.say("a")
        room.leave("b", "QUIT")
        room.say("a")
        room.flush()
        self.assertEqual([e.key.epoch for e in room.sender.keys.epochs], [2])

    def test_repair_policy(self) -> None:
        """Three members asking for one event within the window get one
        re-multicast; one member gets a TLS answer; requests crossing a
        re-multicast are ignored."""
        policy = s.RepairPolicy()
        for member in ("a", "b", "c"):
            policy.request(member, [5], 0.0)
        policy.request("d", [6], 0.01)
        self.assertEqual(policy.due(0.14), ({}, {}))
        again, each = policy.due(0.15)
        self.assertEqual(set(again), {5})
        self.assertEqual(each, {})
        again, each = policy.due(0.17)
        self.assertEqual((again, each), ({}, {"d": [6]}))
        policy.request("e", [5], 0.3)
        self.assertEqual(policy.counts["suppressed"], 1)
        self.assertIsNone(policy.wake_at())
        policy.request("e", [5], 0.7)
        self.assertEqual(policy.wake_at(), 0.85)

    def test_repair_from_history_store(self) -> None:
        """Events older than the in-memory cache, or evicted from it while
        a request waited, are left to the history store, never reported
        as skipped."""
        room = SimRoom(seed=16, sender_args={"cache_events": 10})
        room.join("a")
        room.flush()
        for _ in range(30):
            room.say("a")
        room.flush()
        old = f.MemberRequest("lobby", "REPAIR", ranges=((2, 3),))
        (answer,) = room.sender.request("a", old, 0.0)
        self.assertEqual(answer, s.SendRepair("a", ((2, 3),), (), ((2, 3),)))
        room.handle(
            room.sender.request("a", f.MemberRequest("lobby", "START", epoch=1), 0.0)
        )
        recent = f.MemberRequest("lobby", "REPAIR", ranges=((25, 26),))
        self.assertEqual(room.sender.request("a", recent, 0.0), [])
        for _ in range(10):
            room.say("a")
        room.flush()  # evicts 25 and 26
        actions = room.sender.flush(1.0)
        repairs = [a for a in actions if isinstance(a, s.SendRepair)]
        self.assertEqual(repairs, [s.SendRepair("a", ((25, 26),), (), ((25, 26),))])

    def test_heartbeat_never_claims_unsent_events(self) -> None:
        """While events wait for a pacing token, heartbeats carry the newest
        event already multicast, so members do not ask for the others."""
        room = SimRoom(seed=17, sender_args={"burst": 1, "rate": 1.0})
        room.join("a")
        room.flush()
        sent_first = list(room.net)
        for turn in range(3):
            room.say("a", "x" * 900)
            room.flush()
        room.net.clear()
        room.advance(0.5)
        key = room.sender.keys.current.key
        beats = [f.open_datagram(f.Datagram.from_bytes(d), ROOM, key) for d in room.net]
        beats = [b for b in beats if b.kind == f.KIND_HEARTBEAT]
        self.assertTrue(beats)
        self.assertTrue(sent_first)
        self.assertEqual({b.seq for b in beats}, {1})
        self.assertEqual(room.sender.last_seq, 4)

    def test_requests_from_non_members_ignored(self) -> None:
        """A departed member's repair requests get nothing."""
        room = SimRoom(seed=14)
        room.join("a")
        room.flush()
        request = f.MemberRequest("lobby", "REPAIR", ranges=((1, 1),))
        self.assertEqual(room.sender.request("nobody", request, 0.0), [])
        self.assertEqual(room.sender.counts["request-not-member"], 1)

    def test_repair_of_future_ignored(self) -> None:
        """A repair beyond the newest event is not answered as skipped."""
        room = SimRoom(seed=15)
        room.join("a")
        room.flush()
        request = f.MemberRequest("lobby", "REPAIR", ranges=((5, 9),))
        self.assertEqual(room.sender.request("a", request, 0.0), [])


class RoomMachine(RuleBasedStateMachine):
    """Join, leave, send, rotate, lose, reorder, duplicate, repair: total
    order, exactly-once and post-removal secrecy hold throughout."""

    def __init__(self) -> None:
        super().__init__()
        self.room = SimRoom(seed=0)
        self.names = 0

    @initialize(seed=st.integers(0, 2**32))
    def start(self, seed: int) -> None:
        """A room with two members."""
        self.room = SimRoom(seed)
        self.join()
        self.join()
        self.room.flush()

    @rule()
    def join(self) -> None:
        """Someone new joins."""
        self.names += 1
        self.room.join("m%d" % self.names)

    @precondition(lambda self: len(self.room.in_room) > 1)
    @rule(data=st.data(), how=st.sampled_from(LEAVES))
    def leave(self, data: st.DataObject, how: str) -> None:
        """Someone leaves, in one of the ways."""
        name = data.draw(st.sampled_from(sorted(self.room.in_room)))
        self.room.leave(name, how)

    @precondition(lambda self: bool(self.room.in_room))
    @rule(
        data=st.data(),
        count=st.integers(1, 8),
        size=st.sampled_from([5, 200, 700, 1200]),
    )
    def send(self, data: st.DataObject, count: int, size: int) -> None:
        """Someone says ``count`` things of about ``size`` bytes."""
        name = data.draw(st.sampled_from(sorted(self.room.in_room)))
        for _ in range(count):
            self.room.say(name, "w" * size)

    @rule()
    def rotate(self) -> None:
        """The host rekeys without a departure."""
        self.room.handle(self.room.sender.rekey())

    @rule()
    def flush(self) -> None:
        """The reactor turn ends."""
        self.room.flush()

    @precondition(lambda self: bool(self.room.net))
    @rule(index=st.integers(0, 100))
    def lose(self, index: int) -> None:
        """A datagram in flight is lost for everyone."""
        self.room.net.pop(index % len(self.room.net))

    @precondition(lambda self: len(self.room.net) > 1)
    @rule(seed=st.integers(0, 1000))
    def reorder(self, seed: int) -> None:
        """The datagrams in flight are shuffled."""
        random.Random(seed).shuffle(self.room.net)

    @precondition(lambda self: bool(self.room.net))
    @rule(index=st.integers(0, 100))
    def duplicate(self, index: int) -> None:
        """A datagram in flight is duplicated."""
        self.room.net.append(self.room.net[index % len(self.room.net)])

    @precondition(lambda self: bool(self.room.net))
    @rule()
    def deliver_one(self) -> None:
        """One datagram arrives."""
        self.room.deliver_datagram(self.room.net.pop(0))

    @precondition(lambda self: bool(self.room.net))
    @rule(data=st.data())
    def deliver_to_some(self, data: st.DataObject) -> None:
        """One datagram reaches only some of the members (loss on one
        member's link)."""
        datagram = self.room.net.pop(0)
        for name in sorted(self.room.members):
            member = self.room.members[name]
            if member.receiver is not None and data.draw(st.booleans()):
                self.room.member_actions(
                    member, member.receiver.datagram_received(datagram, self.room.now)
                )

    @rule(data=st.data())
    def deliver_tls(self, data: st.DataObject) -> None:
        """One member's TLS connection delivers a few lines."""
        name = data.draw(st.sampled_from(sorted(self.room.members)))
        for _ in range(data.draw(st.integers(1, 5))):
            self.room.tls_step(self.room.members[name])

    @rule(seconds=st.sampled_from([0.01, 0.1, 0.3, 1.0, 3.0]))
    def repair(self, seconds: float) -> None:
        """Time passes: repair timers, heartbeats, silence."""
        self.room.advance(self.room.now + seconds)

    @invariant()
    def order(self) -> None:
        """Total order and exactly-once so far."""
        self.room.check_order()

    def teardown(self) -> None:
        """In the end everyone in the room has everything, and no departed
        member's key opens anything it must not read."""
        self.room.flush()
        self.room.settle()
        self.room.check_order()
        self.room.check_secrecy()


class RoomMachineTests(SynchronousTestCase):
    """Run the state machine."""

    def test_machine(self) -> None:
        """See RoomMachine."""
        test = RoomMachine.TestCase
        test.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
        test("runTest").runTest()
