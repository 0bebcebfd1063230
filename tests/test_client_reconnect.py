"""The reconnect-and-follow state machine, driven by task.Clock and a recording fake."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatroom.client.reconnect import ReconnectMachine, ReconnectState, RoomTarget

Q = b"\x01" * 32


def target(counter, *addresses):
    return RoomTarget(Q, "lobby", addresses or ("127.0.0.1:6697",), counter)


class FakeSession:
    """Records what the machine asks for."""

    def __init__(self):
        self.calls = []

    def start_attempt(self, attempt, where):
        self.calls.append(("connect", attempt, where.addresses))

    def disconnect(self):
        self.calls.append(("disconnect",))

    def ask_network(self, where):
        self.calls.append(("ask",))

    def report(self, text):
        self.calls.append(("report", text))


class ReconnectMachineTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.session = FakeSession()
        self.delays = [1.0, 1.5, 2.25, 3.375]
        self.machine = ReconnectMachine(
            self.clock,
            self.session,
            target(5),
            policy=lambda n: self.delays[min(n, len(self.delays) - 1)],
        )

    def joined(self):
        self.machine.start()
        self.machine.attempt_succeeded(1)
        self.session.calls.clear()

    def test_start_connects(self):
        self.machine.start()
        self.assertEqual(self.machine.state, ReconnectState.CONNECTING)
        self.assertEqual(self.session.calls, [("connect", 1, ("127.0.0.1:6697",))])
        self.machine.attempt_succeeded(1)
        self.assertEqual(self.machine.state, ReconnectState.JOINED)

    def test_first_failure_is_final(self):
        """Before the first join, an error is the user's to see: no retry."""
        self.machine.start()
        self.machine.attempt_failed(1, "refused")
        self.assertEqual(self.machine.state, ReconnectState.FAILED)
        self.clock.advance(100)
        self.assertEqual(len(self.session.calls), 1)

    def test_lost_then_backoff_grows_and_resets(self):
        self.joined()
        self.clock.advance(10)
        self.machine.connection_lost("reset by peer")
        self.assertEqual(self.machine.state, ReconnectState.WAITING)
        self.assertEqual(self.machine.disconnected_at, 10)
        self.assertEqual(self.session.calls[0][0], "report")
        self.assertIn("reconnecting", self.session.calls[0][1])
        self.assertEqual(self.session.calls[1], ("ask",))
        self.clock.advance(0.999)
        self.assertEqual(self.machine.state, ReconnectState.WAITING)
        self.clock.advance(0.001)
        self.assertEqual(self.session.calls[-1][:2], ("connect", 2))
        self.machine.attempt_failed(2, "refused")
        self.assertEqual(self.machine.state, ReconnectState.WAITING)
        self.clock.advance(1.49)
        self.assertEqual(self.session.calls[-1], ("ask",))
        self.clock.advance(0.01)
        self.assertEqual(self.session.calls[-1][:2], ("connect", 3))
        self.machine.attempt_failed(3, "refused")
        self.clock.advance(2.25)
        self.assertEqual(self.session.calls[-1][:2], ("connect", 4))
        self.machine.attempt_succeeded(4)
        self.assertEqual(self.machine.failures, 0)
        self.machine.connection_lost("again")
        self.session.calls.clear()
        self.clock.advance(1.0)
        self.assertEqual(self.session.calls[-1][:2], ("connect", 5))

    def test_lost_reported_once_not_joined(self):
        """The "Lost" report reaches a listener that already sees the
        machine waiting, not joined."""
        self.joined()
        states = []
        self.session.report = lambda text: states.append(self.machine.state)
        self.machine.connection_lost("reset by peer")
        self.assertEqual(states, [ReconnectState.WAITING])

    def test_newer_announcement_ends_the_wait(self):
        self.joined()
        self.machine.connection_lost("gone")
        self.machine.announcement_seen(target(6, "127.0.0.1:7000"))
        self.assertEqual(self.machine.state, ReconnectState.CONNECTING)
        self.assertEqual(self.session.calls[-1], ("connect", 2, ("127.0.0.1:7000",)))
        self.assertTrue(self.machine.moved)
        # The cancelled backoff timer does not fire a second attempt.
        self.clock.advance(10)
        self.assertEqual(
            [c for c in self.session.calls if c[0] == "connect"],
            [("connect", 2, ("127.0.0.1:7000",))],
        )
        self.machine.attempt_succeeded(2)
        self.assertFalse(self.machine.moved)

    def test_older_or_other_announcement_ignored(self):
        self.joined()
        self.machine.connection_lost("gone")
        self.machine.announcement_seen(target(5, "127.0.0.1:7000"))
        self.machine.announcement_seen(target(4, "127.0.0.1:7001"))
        self.machine.announcement_seen(
            RoomTarget(b"\x02" * 32, "lobby", ("127.0.0.1:7002",), 99)
        )
        self.machine.announcement_seen(RoomTarget(Q, "other", ("127.0.0.1:7003",), 99))
        self.assertEqual(self.machine.state, ReconnectState.WAITING)
        self.assertEqual(self.machine.target, target(5))

    def test_move_while_connecting_abandons_attempt(self):
        self.joined()
        self.machine.connection_lost("gone")
        self.clock.advance(1.0)
        self.session.calls.clear()
        self.machine.announcement_seen(target(7, "127.0.0.1:7000"))
        self.assertEqual(
            self.session.calls, [("disconnect",), ("connect", 3, ("127.0.0.1:7000",))]
        )
        # The abandoned attempt's result no longer counts.
        self.machine.attempt_failed(2, "cancelled")
        self.assertEqual(self.machine.state, ReconnectState.CONNECTING)
        self.machine.attempt_succeeded(3)
        self.assertEqual(self.machine.state, ReconnectState.JOINED)

    def test_newer_while_joined_is_kept_for_later(self):
        self.joined()
        self.machine.announcement_seen(target(6, "127.0.0.1:7000"))
        self.assertEqual(self.machine.state, ReconnectState.JOINED)
        self.assertEqual(self.session.calls, [])
        self.machine.connection_lost("gone")
        self.clock.advance(1.0)
        self.assertEqual(self.session.calls[-1], ("connect", 2, ("127.0.0.1:7000",)))

    def test_close_cancels_everything(self):
        self.joined()
        self.machine.connection_lost("gone")
        self.session.calls.clear()
        self.machine.close()
        self.assertEqual(self.machine.state, ReconnectState.CLOSED)
        self.clock.advance(100)
        self.machine.announcement_seen(target(9, "127.0.0.1:7000"))
        self.assertEqual(self.session.calls, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_close_while_joined_disconnects(self):
        self.joined()
        self.machine.close()
        self.assertEqual(self.session.calls, [("disconnect",)])
        self.machine.connection_lost("closed")
        self.assertEqual(self.machine.state, ReconnectState.CLOSED)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_default_policy_is_client_service_backoff(self):
        machine = ReconnectMachine(self.clock, self.session, target(1))
        self.assertGreaterEqual(machine.policy(0), 1.0)
        self.assertLessEqual(machine.policy(100), 61.0)
        self.assertGreaterEqual(machine.policy(100), 60.0)

    def test_pure_module(self):
        """Importing the machine loads nothing of twisted.internet."""
        import subprocess
        import sys

        code = (
            "import sys, chatroom.client.reconnect; "
            "print(sorted(m for m in sys.modules "
            "if m.startswith('twisted.internet')))"
        )
        import os

        import chatroom

        root = os.path.dirname(os.path.dirname(os.path.abspath(chatroom.__file__)))
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=root,
            env=dict(os.environ, PYTHONPATH=root),
        )
        self.assertEqual(out.stdout.strip(), "[]")
