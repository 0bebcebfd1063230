"""Tests for the member side of fan-out: chatroom.core.fanout_receiver."""

from __future__ import annotations

import os
import random

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatroom.core import fanout as f
from chatroom.core import fanout_receiver as r
from chatroom.core.discovery import raw_public_key
from chatroom.core.fanout_receiver import (
    Deliver,
    FanoutListener,
    FanoutReceiver,
    ModeReport,
    ReorderBuffer,
    ReplayWindow,
    RequestHistory,
    SendRequest,
)

HOST_KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
MEMBER_KEY = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
ROOM = f.RoomIdentity(raw_public_key(HOST_KEY), "lobby")
KEY1 = f.EpochKey(1, bytes(range(32)))
KEY2 = f.EpochKey(2, bytes(range(1, 33)))


def line(seq: int) -> bytes:
    """The event line of ``seq`` in these tests."""
    return b"@msgid=lobby:%d :a!a@h PRIVMSG #lobby :%d" % (seq, seq)


def data(
    seq: int,
    count: int = 1,
    counter: int | None = None,
    key: f.EpochKey = KEY1,
    signer: Ed25519PrivateKey = HOST_KEY,
    room: f.RoomIdentity = ROOM,
) -> bytes:
    """A data datagram with events seq..seq+count-1."""
    return f.seal(
        signer,
        room,
        key,
        f.KIND_DATA,
        seq if counter is None else counter,
        seq,
        f.encode_events([line(s) for s in range(seq, seq + count)]),
    )


def grant(key: f.EpochKey = KEY1, next_counter: int = 0) -> f.KeyGrant:
    """A KEY line for ``key``."""
    return f.KeyGrant("lobby", key, "239.255.67.70", 47668, next_counter)


def delivered(actions: list[r.Action]) -> list[int]:
    """The sequence numbers delivered by ``actions``."""
    return [a.seq for a in actions if isinstance(a, Deliver)]


def requests(actions: list[r.Action]) -> list[f.MemberRequest]:
    """The FANOUT requests in ``actions``."""
    return [a.request for a in actions if isinstance(a, SendRequest)]


class ReplayWindowTests(SynchronousTestCase):
    """The IPsec-style window over datagram counters."""

    def test_window(self) -> None:
        """New counters pass; seen, too old and too far ahead do not; only
        accept() moves the window."""
        window = ReplayWindow(next_counter=10)
        self.assertIsNone(window.check(10))
        self.assertEqual(window.state, (9, 0))
        window.accept(10)
        self.assertEqual(window.check(10), "replay")
        self.assertIsNone(window.check(9))
        window.accept(100)
        self.assertEqual(window.check(100 - 64), "too-old")
        self.assertIsNone(window.check(100 - 63))
        self.assertEqual(window.check(1101), "too-far-ahead")
        self.assertIsNone(window.check(1100))
        window.accept(40)
        self.assertEqual(window.check(40), "replay")
        window.restart_at(50)  # backwards: ignored
        self.assertEqual(window.check(100), "replay")
        window.restart_at(5000)
        self.assertIsNone(window.check(5000))
        self.assertEqual(window.check(100), "too-old")

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.integers(0, 300), max_size=200))
    def test_never_accepts_twice(self, counters: list[int]) -> None:
        """Whatever the order, no counter passes the check twice."""
        window = ReplayWindow()
        passed = []
        for counter in counters:
            if window.check(counter) is None:
                window.accept(counter)
                passed.append(counter)
        self.assertEqual(len(passed), len(set(passed)))


class ReorderBufferTests(SynchronousTestCase):
    """One ordered stream from many sources."""

    def buffer(self, **kw: object) -> ReorderBuffer:
        """A buffer starting at 1 whose random waits are all 100 ms."""
        return ReorderBuffer(1, lambda: 1 / 3, **kw)  # type: ignore[arg-type]

    def test_in_order_and_duplicates(self) -> None:
        """Events come out in order once, however they arrive."""
        b = self.buffer()
        self.assertEqual(delivered(list(b.offer(2, line(2), 0))), [])
        self.assertEqual(delivered(list(b.offer(2, line(2), 0))), [])
        self.assertEqual(delivered(list(b.offer(1, line(1), 0))), [1, 2])
        self.assertEqual(delivered(list(b.offer(1, line(1), 0))), [])
        self.assertEqual(b.counts["duplicate"], 2)

    def test_gap_repair_after_wait(self) -> None:
        """A gap is asked for after the random wait, in one request, and
        again after the retry time; nothing is asked before."""
        b = self.buffer()
        b.offer(1, line(1), 0.0)
        b.offer(5, line(5), 0.0)
        self.assertAlmostEqual(b.wake_at(), 0.1)
        self.assertEqual(b.due(0.09), [])
        self.assertEqual(b.due(0.1), [((2, 4),)])
        self.assertEqual(b.due(0.2), [])
        self.assertAlmostEqual(b.wake_at(), 2.1)
        b.offer(3, line(3), 1.0)
        self.assertEqual(b.due(2.1), [((2, 2), (4, 4))])

    def test_request_fits_one_line(self) -> None:
        """Many scattered gaps are asked for in requests that each fit the
        host's 450-character limit, until all are asked."""
        b = self.buffer()
        for seq in range(1, 1000, 2):
            b.offer(seq, line(seq), 0.0)
        b.offer(1, line(1), 0.0)
        asked = []
        for _ in range(10):
            for ranges in b.due(1.0):
                text = f.format_ranges(ranges)  # type: ignore[arg-type]
                self.assertLessEqual(len(text), f.MAX_RANGES_TEXT)
                self.assertEqual(f.parse_ranges(text), ranges)
                asked += [s for a, z in ranges for s in range(a, z + 1)]  # type: ignore[misc]
        self.assertEqual(sorted(asked), list(range(2, 999, 2)))

    def test_filled_meanwhile(self) -> None:
        """A gap filled before the wait ends is never asked for."""
        b = self.buffer()
        b.offer(2, line(2), 0.0)
        self.assertEqual(delivered(list(b.offer(1, line(1), 0.05))), [1, 2])
        self.assertIsNone(b.wake_at())
        self.assertEqual(b.due(1.0), [])

    def test_complete_skips(self) -> None:
        """Numbers a complete range did not hold are passed over."""
        b = self.buffer()
        b.offer(4, line(4), 0)
        self.assertEqual(delivered(list(b.complete([(1, 3)], 0))), [4])
        self.assertEqual(b.counts["skipped"], 3)
        self.assertIsNone(b.wake_at())

    def test_complete_ahead(self) -> None:
        """A complete range beyond the next event marks its last number
        too, and a later offer still fills a number marked missing."""
        b = self.buffer()
        b.offer(5, line(5), 0)
        b.complete([(3, 4)], 0)
        self.assertEqual(delivered(list(b.offer(1, line(1), 0))), [1])
        self.assertEqual(delivered(list(b.offer(3, line(3), 0))), [])
        self.assertEqual(delivered(list(b.offer(2, line(2), 0))), [2, 3, 5])

    def test_live_tls_completes(self) -> None:
        """With tls_from set, a live TLS event says all below it (from
        tls_from on) never existed, and nothing there is asked for."""
        b = ReorderBuffer(10, lambda: 0.0, tls_from=10)
        self.assertEqual(delivered(list(b.offer(13, line(13), 0))), [])
        self.assertEqual(delivered(list(b.offer(12, line(12), 0, tls=True))), [12, 13])
        self.assertEqual(b.next_seq, 14)
        self.assertIsNone(b.wake_at())

    def test_over_tls_not_asked_until_late(self) -> None:
        """An event marked "over TLS" is not repaired unless it is late."""
        b = self.buffer()
        b.offer(1, line(1), 0.0)
        b.expect_over_tls(2, 0.0)
        b.offer(3, line(3), 0.0)
        self.assertEqual(b.due(1.0), [])
        self.assertEqual(b.due(r.TLS_WAIT), [((2, 2),)])
        self.assertEqual(delivered(list(b.offer(2, line(2), 2.5))), [2, 3])

    def test_big_gap_uses_history(self) -> None:
        """More than 1000 missing events are caught up with CHATHISTORY, one
        batch at a time; then the remaining small gap is repaired."""
        b = self.buffer()
        b.offer(1, line(1), 0)
        b.known(1500, 0)
        self.assertEqual(b.wake_at(), 0.0)
        self.assertEqual(b.due(0), [RequestHistory(1, 100)])
        self.assertEqual(b.due(0.5), [])  # one at a time
        batch = [(s, line(s)) for s in range(2, 103) if s != 50]
        got = delivered(list(b.history_batch(1, batch, 100, 1.0)))
        self.assertEqual(got, [s for s in range(2, 103) if s != 50])
        self.assertEqual(b.next_seq, 103)
        self.assertEqual(b.due(1.0), [RequestHistory(102, 100)])
        batch = [(s, line(s)) for s in range(103, 600)]
        b.history_batch(102, batch, len(batch), 2.0)
        self.assertEqual(b.next_seq, 600)
        # 600..1500 is 901 events: repairable.  Those already waiting
        # since before the history request are asked at once, the rest
        # after the wait.
        self.assertEqual(b.due(2.0), [((600, 1102),)])
        self.assertEqual(b.due(2.1), [((1103, 1500),)])

    def test_short_history_batch_completes_known(self) -> None:
        """A short batch covers everything known when it was asked for."""
        b = self.buffer()
        b.known(1200, 0)
        self.assertEqual(b.due(0), [RequestHistory(0, 100)])
        events = [(s, line(s)) for s in (3, 1199)]
        self.assertEqual(delivered(list(b.history_batch(0, events, 100, 1))), [3, 1199])
        self.assertEqual(b.next_seq, 1201)

    def test_held_bounded(self) -> None:
        """Events more than 1000 ahead are not held."""
        b = self.buffer()
        b.offer(1001, line(1001), 0)
        self.assertEqual(b.counts["too-far-ahead"], 1)
        self.assertEqual(b.latest, 1001)

    @settings(max_examples=200, deadline=None)
    @given(
        st.integers(1, 60),
        st.randoms(use_true_random=False),
        st.lists(st.sampled_from(["offer", "dup", "complete", "known"]), max_size=80),
    )
    def test_exactly_once_in_order(
        self, n: int, rng: random.Random, ops: list[str]
    ) -> None:
        """Offered in any order, with duplicates and completions of ranges
        whose events were all offered, each event is delivered once and in
        order; once all are offered, all are delivered."""
        b = ReorderBuffer(1, rng.random)
        order = list(range(1, n + 1))
        rng.shuffle(order)
        out: list[int] = []
        offered: list[int] = []
        for op in ops:
            if op == "offer" and order:
                seq = order.pop()
                offered.append(seq)
                out += delivered(list(b.offer(seq, line(seq), 0)))
            elif op == "dup" and offered:
                seq = rng.choice(offered)
                out += delivered(list(b.offer(seq, line(seq), 0)))
            elif op == "known" and offered:
                b.known(max(offered), 0)
            elif op == "complete":
                # Complete only a prefix that has been entirely offered.
                top = 0
                while top + 1 in offered:
                    top += 1
                if top:
                    out += delivered(list(b.complete([(1, top)], 0)))
        for seq in order:
            out += delivered(list(b.offer(seq, line(seq), 0)))
        self.assertEqual(out, list(range(1, n + 1)))


class ReceiverTests(SynchronousTestCase):
    """Datagram checks, drops and modes of FanoutReceiver."""

    def setUp(self) -> None:
        self.receiver = FanoutReceiver(
            ROOM, grant(), next_seq=1, now=0.0, random=lambda: 0.0
        )

    def feed(self, datagram: bytes, now: float = 0.0) -> list[r.Action]:
        """Give the receiver one datagram."""
        return self.receiver.datagram_received(datagram, now)

    def assert_dropped(self, datagram: bytes, reason: str, now: float = 0.0) -> None:
        """The datagram is dropped for ``reason``, nothing is delivered and
        no window moves."""
        windows = {
            e: self.receiver.replay_window(e).state  # type: ignore[union-attr]
            for e in self.receiver.epochs
        }
        before = self.receiver.drops[reason]
        next_seq = self.receiver.buffer.next_seq
        self.assertEqual(delivered(self.feed(datagram, now)), [])
        self.assertEqual(self.receiver.drops[reason], before + 1, reason)
        self.assertEqual(self.receiver.buffer.next_seq, next_seq)
        self.assertEqual(
            {
                e: self.receiver.replay_window(e).state  # type: ignore[union-attr]
                for e in self.receiver.epochs
            },
            windows,
        )

    def test_valid_datagram_starts_multicast(self) -> None:
        """The first valid datagram is delivered and asks for multicast;
        the MODE answer switches."""
        actions = self.feed(data(1, 2))
        self.assertEqual(delivered(actions), [1, 2])
        self.assertEqual(
            requests(actions), [f.MemberRequest("lobby", "START", epoch=1)]
        )
        self.assertEqual(self.receiver.mode, "starting")
        actions = self.receiver.mode_changed(f.ModeChange("lobby", True, 2), 0)
        self.assertIn(
            ModeReport("multicast", "Receiving the room by multicast."), actions
        )
        self.assertEqual(self.receiver.mode, "multicast")

    def test_bad_inputs_dropped_and_counted(self) -> None:
        """Every kind of bad datagram is dropped, counted under its reason,
        raises nothing and leaves the replay window where it was."""
        self.feed(data(1, counter=0))
        self.assert_dropped(
            data(2, key=f.EpochKey(1, os.urandom(32))), "bad-ciphertext"
        )  # a non-member
        self.assert_dropped(data(2, signer=MEMBER_KEY), "bad-signature")
        self.assert_dropped(data(1, counter=0), "replay")
        self.assert_dropped(data(2, counter=5000), "too-far-ahead")
        self.assert_dropped(data(2)[:50], "truncated")
        self.assert_dropped(data(2)[:-1], "bad-ciphertext")
        self.assert_dropped(b"\x00" * 200, "bad-magic")
        self.assert_dropped(
            data(2, room=f.RoomIdentity(ROOM.q, "other")), "unknown-room"
        )
        self.assert_dropped(data(2, key=f.EpochKey(50, KEY1.key)), "unknown-epoch")
        rng = random.Random(1)
        for _ in range(200):
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1300)))
            self.assertEqual(self.feed(junk), [])
            junk = data(2)[:34] + junk[:1000]
            self.assertEqual(self.feed(junk), [])
        self.assertEqual(self.receiver.buffer.next_seq, 2)

    def test_check_order(self) -> None:
        """The first failing check names the drop: the window before the
        AEAD, the AEAD before the budget, the budget before the
        signature; a non-member's flood does not spend the budget."""
        self.feed(data(1, counter=0))
        forged_replay = data(9, counter=0, key=f.EpochKey(1, bytes(32)))
        self.assert_dropped(forged_replay, "replay")
        for counter in range(1, 400):
            self.feed(data(2, counter=counter, key=f.EpochKey(1, bytes(32))), 1.0)
        self.assertEqual(self.receiver.drops["bad-ciphertext"], 399)
        self.assertEqual(self.receiver.drops["rate-limited"], 0)
        for counter in range(1, 400):
            self.feed(data(2, counter=counter, signer=MEMBER_KEY), 1.0)
        # 399 member forgeries: the full budget of 200 is spent on
        # signature checks, the other 199 are dropped before.
        self.assertEqual(self.receiver.drops["bad-signature"], 200)
        self.assertEqual(self.receiver.drops["rate-limited"], 199)

    def test_far_ahead_counter_asks_sync(self) -> None:
        """A counter far ahead asks the host to resynchronise (at most every
        5 s); the answer moves the window forward."""
        actions = self.feed(data(1, counter=5000))
        self.assertEqual(requests(actions), [f.MemberRequest("lobby", "SYNC")])
        self.assertEqual(requests(self.feed(data(2, counter=5001), 1.0)), [])
        self.receiver.key_received(grant(next_counter=5000), 2.0)
        self.assertEqual(delivered(self.feed(data(1, counter=5000), 2.0)), [1])

    def test_old_epoch_after_grace(self) -> None:
        """After a rotation the old key works for the grace period, then is
        erased and its datagrams are dropped."""
        self.feed(data(1, counter=0))
        self.receiver.key_received(grant(KEY2), 10.0)
        self.assertEqual(delivered(self.feed(data(2, counter=1), 10.5)), [2])
        self.receiver.tick(10.0 + r.KEY_GRACE)
        self.assertEqual(self.receiver.epochs, (2,))
        self.assert_dropped(data(3, counter=2), "old-epoch", 12.5)

    def test_new_epoch_held_until_key(self) -> None:
        """A datagram under the next epoch that arrives before its KEY line
        is held and used when the key comes; it is dropped if the key does
        not come within the hold time."""
        self.feed(data(1, counter=0))
        self.assertEqual(self.feed(data(2, counter=0, key=KEY2), 1.0), [])
        self.assertEqual(delivered(self.receiver.key_received(grant(KEY2), 1.5)), [2])
        key3 = f.EpochKey(3, bytes(32))
        self.feed(data(3, counter=0, key=key3), 2.0)
        self.receiver.tick(2.0 + r.HOLD_TIME)
        self.assertEqual(self.receiver.drops["key-late"], 1)

    def test_rate_limit(self) -> None:
        """More than 200 datagrams a second are dropped before the
        signature check, and counted."""
        for counter in range(250):
            self.feed(
                f.seal(HOST_KEY, ROOM, KEY1, f.KIND_HEARTBEAT, counter, 0, b""), 0.5
            )
        self.assertEqual(self.receiver.accepted, 200)
        self.assertEqual(self.receiver.drops["rate-limited"], 50)

    def test_heartbeat_reveals_tail_loss(self) -> None:
        """A heartbeat with a newer sequence number makes the lost tail
        asked for after the random wait."""
        self.feed(data(1, counter=0))
        self.receiver.mode_changed(f.ModeChange("lobby", True, 1), 0.0)
        self.feed(f.seal(HOST_KEY, ROOM, KEY1, f.KIND_HEARTBEAT, 5, 3, b""), 0.3)
        self.assertAlmostEqual(self.receiver.wake_at, 0.35)  # type: ignore[arg-type]
        self.assertEqual(
            requests(self.receiver.tick(0.35)),
            [f.MemberRequest("lobby", "REPAIR", ranges=((2, 3),))],
        )
        actions = self.receiver.tls_event(2, line(2), 0.4)
        actions += self.receiver.repaired(((2, 3),), 0.4)
        self.assertEqual(delivered(actions), [2])
        self.assertEqual(self.receiver.buffer.next_seq, 4)

    def test_silence_falls_back_and_loses_nothing(self) -> None:
        """Without datagrams for 5 s a multicast member asks for TLS, and
        repairs what it missed up to the MODE TLS number."""
        self.feed(data(1, counter=0))
        self.receiver.mode_changed(f.ModeChange("lobby", True, 1), 0.0)
        self.assertEqual(self.receiver.wake_at, r.SILENCE)
        actions = self.receiver.tick(r.SILENCE)
        self.assertEqual(requests(actions), [f.MemberRequest("lobby", "STOP")])
        self.assertTrue(
            any(isinstance(a, ModeReport) and a.mode == "tls" for a in actions)
        )
        self.receiver.mode_changed(f.ModeChange("lobby", False, 3), 5.1)
        self.assertEqual(requests(self.receiver.tick(5.1)), [])
        actions = self.receiver.tick(5.15)
        self.assertEqual(
            requests(actions), [f.MemberRequest("lobby", "REPAIR", ranges=((2, 3),))]
        )
        out = delivered(self.receiver.tls_event(2, line(2), 5.2))
        out += delivered(self.receiver.tls_event(3, line(3), 5.2))
        out += delivered(self.receiver.tls_event(4, line(4), 5.2))  # live
        self.assertEqual(out, [2, 3, 4])
        # A datagram now does not START again before the back-off.
        self.assertEqual(requests(self.feed(data(5, counter=9), 6.0)), [])
        self.assertEqual(
            requests(self.feed(data(6, counter=10), 36.0)),
            [f.MemberRequest("lobby", "START", epoch=1)],
        )

    def test_no_datagram_tells_user(self) -> None:
        """When nothing arrives after the key, the user is told once."""
        actions = self.receiver.tick(r.PROBE_TIMEOUT)
        self.assertEqual(
            [a.mode for a in actions if isinstance(a, ModeReport)], ["tls"]
        )
        self.assertEqual(self.receiver.tick(r.PROBE_TIMEOUT + 10), [])

    def test_listener_dispatches_by_room(self) -> None:
        """The listener gives each room's datagrams to its receiver."""
        listener = FanoutListener()
        listener.add(self.receiver)
        room, actions = listener.datagram_received(data(1, counter=0), 0)
        self.assertEqual((room, delivered(actions)), ("lobby", [1]))
        room, _ = listener.datagram_received(
            data(1, room=f.RoomIdentity(ROOM.q, "other")), 0
        )
        self.assertIsNone(room)
        listener.datagram_received(b"junk", 0)
        self.assertEqual(dict(listener.drops), {"unknown-room": 1, "truncated": 1})
        listener.remove(self.receiver)
        self.assertEqual(listener.datagram_received(data(2), 0), (None, []))
