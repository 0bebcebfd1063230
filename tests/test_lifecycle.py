"""Tests for chatroom.core.lifecycle: phases and the one deadline of each."""

from twisted.trial.unittest import SynchronousTestCase

from chatroom.core.lifecycle import Deadlines, Due, Lifecycle, Phase

D = Deadlines(
    handshake_timeout=10,
    registration_timeout=30,
    ping_after=90,
    close_after=150,
    close_grace=10,
)


class LifecycleTests(SynchronousTestCase):
    """Each phase's deadline, computed from numbers alone."""

    def test_handshake_deadline(self):
        life = Lifecycle(D, 100.0, tls=True)
        self.assertEqual(life.phase, Phase.HANDSHAKING)
        self.assertEqual(life.due(104.0), (None, 6.0))
        self.assertEqual(life.due(110.0), (Due.ABORT, None))

    def test_plain_text_starts_registering(self):
        life = Lifecycle(D, 0.0, tls=False)
        self.assertEqual(life.phase, Phase.REGISTERING)
        self.assertEqual(life.due(30.0), (Due.REGISTRATION_TIMEOUT, None))

    def test_registration_clock_starts_after_handshake(self):
        life = Lifecycle(D, 0.0, tls=True)
        self.assertTrue(life.handshake_done(8.0))
        self.assertFalse(life.handshake_done(9.0))
        self.assertEqual(life.due(20.0), (None, 18.0))
        self.assertEqual(life.due(38.0), (Due.REGISTRATION_TIMEOUT, None))

    def test_idle_ping_then_timeout(self):
        """Silent for 90 s: one PING; for 150 s: ping timeout."""
        life = Lifecycle(D, 0.0, tls=False)
        self.assertTrue(life.register(5.0))
        self.assertTrue(life.registered)
        self.assertEqual(life.due(50.0), (None, 45.0))
        self.assertEqual(life.due(95.0), (Due.PING, 60.0))
        self.assertEqual(life.due(100.0), (None, 55.0))
        self.assertEqual(life.due(155.0), (Due.PING_TIMEOUT, None))

    def test_input_resets_idle(self):
        life = Lifecycle(D, 0.0, tls=False)
        life.register(0.0)
        self.assertEqual(life.due(95.0)[0], Due.PING)
        life.input(120.0)
        self.assertEqual(life.due(150.0), (None, 60.0))
        self.assertEqual(life.due(211.0)[0], Due.PING)

    def test_closing_grace_then_closed(self):
        life = Lifecycle(D, 0.0, tls=False)
        life.register(1.0)
        self.assertTrue(life.close(50.0))
        self.assertFalse(life.open)
        self.assertFalse(life.registered)
        self.assertFalse(life.close(51.0))
        self.assertEqual(life.due(55.0), (None, 5.0))
        self.assertEqual(life.due(60.0), (Due.ABORT, None))
        self.assertTrue(life.lost(61.0))
        self.assertEqual(life.due(1000.0), (None, None))
        self.assertFalse(life.lost(62.0))

    def test_no_way_back(self):
        """A closed connection cannot register or finish a handshake."""
        life = Lifecycle(D, 0.0, tls=True)
        life.lost(1.0)
        self.assertFalse(life.handshake_done(2.0))
        self.assertFalse(life.register(2.0))
        self.assertEqual(life.phase, Phase.CLOSED)
