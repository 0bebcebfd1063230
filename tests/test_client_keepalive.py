"""The keepalive state machine, driven by task.Clock."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatroom.client.keepalive import Keepalive, KeepaliveState


class KeepaliveTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.probes = []
        self.deaths = []
        self.keepalive = Keepalive(
            self.clock, self.probes.append, self.deaths.append, interval=30, timeout=30
        )
        self.keepalive.start()

    def test_probe_after_quiet_then_dead(self):
        self.clock.advance(29.9)
        self.assertEqual(self.probes, [])
        self.clock.advance(0.1)
        self.assertEqual(self.probes, ["chatroom-1"])
        self.assertEqual(self.keepalive.state, KeepaliveState.PROBING)
        self.clock.advance(29.9)
        self.assertEqual(self.deaths, [])
        self.clock.advance(0.1)
        self.assertEqual(self.keepalive.state, KeepaliveState.DEAD)
        (why,) = self.deaths
        self.assertIn("60 s", why)
        self.clock.advance(1000)
        self.assertEqual((len(self.probes), len(self.deaths)), (1, 1))

    def test_lines_postpone_the_probe(self):
        for _ in range(10):
            self.clock.advance(20)
            self.keepalive.line_received()
        self.assertEqual(self.probes, [])
        self.clock.advance(30)
        self.assertEqual(len(self.probes), 1)

    def test_any_line_answers_the_probe(self):
        self.clock.advance(30)
        self.clock.advance(10)
        self.keepalive.line_received()
        self.assertEqual(self.keepalive.state, KeepaliveState.QUIET)
        self.clock.advance(29.9)
        self.assertEqual((len(self.probes), self.deaths), (1, []))
        self.clock.advance(0.1)
        self.assertEqual(len(self.probes), 2)

    def test_stop_cancels(self):
        self.keepalive.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(100)
        self.assertEqual((self.probes, self.deaths), ([], []))

    def test_bad_settings(self):
        self.assertRaises(ValueError, Keepalive, self.clock, id, id, interval=0)
