"""One timer for many deadlines (chatroom.timerqueue)."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatroom.timerqueue import COMPACT_AFTER, TimerQueue


class Owner:
    """Records when its deadline passed; may schedule again or fail."""

    def __init__(self, queue, name, log, then=None, fail=False):
        self.queue = queue
        self.name = name
        self.log = log
        self.then = then
        self.fail = fail
        self.entry = None

    def deadline_passed(self):
        self.log.append((self.name, self.queue.clock.seconds()))
        if self.fail:
            raise RuntimeError("boom")
        if self.then is not None:
            when, self.then = self.then, None
            self.entry = self.queue.schedule(self, when)


class TimerQueueTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1764000000)
        self.queue = TimerQueue(self.clock)
        self.log = []

    def owner(self, name, **kw):
        return Owner(self.queue, name, self.log, **kw)

    def at(self, seconds):
        return self.clock.seconds() + seconds

    def test_one_call_for_many(self):
        """Many deadlines, one C{DelayedCall}, for the earliest; each owner
        runs when the clock reaches its deadline, not before, in time
        order, ties in scheduling order."""
        t0 = self.clock.seconds()
        for name, delay in [("c", 30), ("a", 10), ("b", 10), ("d", 90)]:
            self.queue.schedule(self.owner(name), self.at(delay))
        (call,) = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime(), t0 + 10)
        self.clock.advance(9.5)
        self.assertEqual(self.log, [])
        self.clock.advance(0.5)
        self.assertEqual(self.log, [("a", t0 + 10), ("b", t0 + 10)])
        (call,) = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime(), t0 + 30)
        self.clock.pump([1] * 80)
        self.assertEqual(
            self.log,
            [("a", t0 + 10), ("b", t0 + 10), ("c", t0 + 30), ("d", t0 + 90)],
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.queue), 0)

    def test_sooner_moves_the_call(self):
        """A deadline earlier than the scheduled one moves the call sooner."""
        t0 = self.clock.seconds()
        self.queue.schedule(self.owner("late"), self.at(90))
        self.queue.schedule(self.owner("soon"), self.at(5))
        (call,) = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime(), t0 + 5)
        self.clock.advance(5)
        self.assertEqual(self.log, [("soon", t0 + 5)])

    def test_cancel(self):
        """A cancelled deadline never runs and drops its owner at once; the
        timer stops when nothing is left."""
        owner = self.owner("gone")
        entry = self.queue.schedule(owner, self.at(10))
        kept = self.queue.schedule(self.owner("kept"), self.at(20))
        self.queue.cancel(entry)
        self.assertIsNone(entry[2])
        self.queue.cancel(entry)  # twice is harmless
        self.clock.advance(20)
        self.assertEqual([name for name, _ in self.log], ["kept"])
        self.queue.cancel(kept)  # after it ran: harmless
        self.assertEqual(self.clock.getDelayedCalls(), [])
        last = self.queue.schedule(self.owner("last"), self.at(5))
        self.queue.cancel(last)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.queue), 0)

    def test_compaction(self):
        """Cancelled entries behind live ones are dropped once they are many
        and more than half of the heap: the heap stays bounded."""
        self.queue.schedule(self.owner("first"), self.at(1))
        entries = [
            self.queue.schedule(self.owner(str(i)), self.at(100 + i))
            for i in range(COMPACT_AFTER * 3)
        ]
        for entry in entries:
            self.queue.cancel(entry)
        self.assertLessEqual(len(self.queue), COMPACT_AFTER * 2 + 1)
        t0 = self.clock.seconds()
        self.clock.pump([1] * 300)
        self.assertEqual(self.log, [("first", t0 + 1)])
        self.assertEqual(len(self.queue), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_schedule_while_running(self):
        """An owner that schedules its next deadline when called gets it,
        and the queue keeps one call."""
        t0 = self.clock.seconds()
        self.queue.schedule(self.owner("a", then=t0 + 50), self.at(10))
        self.queue.schedule(self.owner("b"), self.at(30))
        self.clock.advance(10)
        (call,) = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime(), t0 + 30)
        self.clock.pump([1] * 40)
        self.assertEqual(self.log, [("a", t0 + 10), ("b", t0 + 30), ("a", t0 + 50)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_due_now_runs_in_the_same_turn(self):
        """A deadline scheduled for now by a running owner runs in the same
        pass, as the past deadlines do."""
        t0 = self.clock.seconds()
        self.queue.schedule(self.owner("a", then=t0 + 10), self.at(10))
        self.clock.advance(10)
        self.assertEqual(self.log, [("a", t0 + 10), ("a", t0 + 10)])

    def test_failing_owner(self):
        """An owner that raises is logged; the others still run and the
        timer goes on."""
        t0 = self.clock.seconds()
        self.queue.schedule(self.owner("bad", fail=True), self.at(1))
        self.queue.schedule(self.owner("good"), self.at(1))
        self.queue.schedule(self.owner("later"), self.at(2))
        self.clock.advance(1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.clock.advance(1)
        self.assertEqual(
            self.log, [("bad", t0 + 1), ("good", t0 + 1), ("later", t0 + 2)]
        )

    def test_stop(self):
        """L{TimerQueue.stop} forgets everything and leaves no call."""
        entry = self.queue.schedule(self.owner("a"), self.at(1))
        self.queue.stop()
        self.assertIsNone(entry[2])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(5)
        self.assertEqual(self.log, [])


class ConnectionTimerTests(SynchronousTestCase):
    """The host's connections share its one timer."""

    def test_one_timer_for_all_connections(self):
        """A host with many connections in several phases holds one
        C{DelayedCall} for their deadlines; each connection's deadline
        still runs on time and a lost connection leaves none behind."""
        from .fakes import FakeClient, make_host

        host = make_host()
        registered = [FakeClient(host).register("u%d" % i) for i in range(3)]
        waiting = [FakeClient(host) for _ in range(3)]
        self.assertEqual(len(host.clock.getDelayedCalls()), 1)
        self.assertEqual(len(host.timers), 6)
        waiting[0].disconnect()
        host.clock.advance(30)
        for client in waiting[1:]:
            self.assertTrue(client.transport.disconnecting)
            self.assertIn("Registration timeout", client.messages()[-1].params[0])
        host.clock.advance(60)
        for client in registered:
            self.assertEqual(client.commands(), ["PING"])
        self.assertEqual(len(host.clock.getDelayedCalls()), 1)
        for client in registered + waiting[1:]:
            client.disconnect()
        self.assertEqual(host.clock.getDelayedCalls(), [])
        self.assertEqual(len(host.timers), 0)

    def test_close_grace(self):
        """A closing connection whose peer never finishes the close is
        aborted after the close grace, through the shared timer."""
        from chatroom.ircserver import CLOSE_GRACE

        from .fakes import FakeClient, make_host

        host = make_host()
        client = FakeClient(host).register("alice")
        other = FakeClient(host).register("bob")
        client.protocol.close("Bye")
        self.assertTrue(client.transport.disconnecting)
        host.clock.advance(CLOSE_GRACE - 0.5)
        self.assertFalse(client.transport.disconnected)
        host.clock.advance(0.5)
        self.assertTrue(client.transport.disconnected)
        self.assertFalse(other.transport.disconnecting)
        client.disconnect()
        other.disconnect()
        self.assertEqual(host.clock.getDelayedCalls(), [])
