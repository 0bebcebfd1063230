"""Mechanisms that keep the host small on small nodes (docs/benchmarks.rst).

Memory and speed are measured by the benchmark (C{bench/}), never here; these
tests check that each mechanism is in place.
"""

import os
import subprocess
import sys

from OpenSSL import SSL
from twisted.trial.unittest import SynchronousTestCase

from chatroom.history import PAGE_CACHE_KIB, HistoryStore
from chatroom.identity import HostIdentity
from chatroom.ircserver import ReplyQueue
from chatroom.tls import server_options

from .fakes import FakeClient, make_host

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ReleaseBuffersTests(SynchronousTestCase):
    """OpenSSL frees an idle TLS member's read and write buffers."""

    def test_host_context(self):
        """The host's TLS server context (the one L{HostService} listens
        with) has C{SSL_MODE_RELEASE_BUFFERS} set."""
        context = server_options(HostIdentity.generate()).getContext()
        # Clearing no bits returns the mode; pyOpenSSL has no getter, and
        # allows this only before the context has made a connection.
        mode = context.clear_mode(0)
        self.assertEqual(mode & SSL.MODE_RELEASE_BUFFERS, SSL.MODE_RELEASE_BUFFERS)

    def test_no_session_cache(self):
        """The host's context keeps no session cache and issues no session
        tickets: nothing per member outlives its connection."""
        context = server_options(HostIdentity.generate()).getContext()
        self.assertEqual(context.get_session_cache_mode(), SSL.SESS_CACHE_OFF)
        self.assertEqual(context.set_options(0) & SSL.OP_NO_TICKET, SSL.OP_NO_TICKET)


class PageCacheTests(SynchronousTestCase):
    """The history database's SQLite page cache is bounded."""

    def test_cache_size(self):
        """An opened store runs with a page cache of L{PAGE_CACHE_KIB} KiB,
        below SQLite's default of 2000 KiB."""
        store = HistoryStore(self.mktemp())
        self.addCleanup(store.close)
        ((cache_size,),) = store._db.execute("PRAGMA cache_size")
        self.assertEqual(cache_size, -PAGE_CACHE_KIB)
        self.assertLess(PAGE_CACHE_KIB, 2000)


class IdleMemberTests(SynchronousTestCase):
    """What the host keeps per member lives in slots, and what most members
    never use is made on first use."""

    def test_registered_connection_has_no_instance_dict(self):
        """A client that registered and joined a room has every attribute
        in a slot: reading C{__dict__} finds it empty (it was never
        materialised by an attribute outside the slots)."""
        host = make_host()
        client = FakeClient(host).register("alice").join()
        connection = client.protocol
        self.assertEqual(connection.__dict__, {})
        for part in (
            connection.lifecycle,
            connection._guard,
            connection._guard._bucket,
        ):
            self.assertFalse(hasattr(part, "__dict__"), part)

    def test_shared_deadlines(self):
        """Connections of one host share one L{Deadlines} object."""
        host = make_host()
        first, second = FakeClient(host).protocol, FakeClient(host).protocol
        self.assertIs(first.lifecycle.deadlines, second.lifecycle.deadlines)
        self.assertEqual(first.lifecycle.deadlines.ping_after, host.limits.ping_after)

    def test_made_on_first_use(self):
        """MONITOR and MARKREAD state, flood-delayed lines and connection-lost
        waiters do not exist for a member that never needed them, and
        appear when used."""
        host = make_host()
        connection = FakeClient(host).register("alice").join().protocol
        self.assertIsNone(connection._monitoring)
        self.assertIsNone(connection._read_markers)
        self.assertIsNone(connection._lost_waiters)
        self.assertIsNone(connection._guard._delayed)
        self.assertIs(connection.caps, FakeClient(host).protocol.caps)
        connection.monitoring["bob"] = "Bob"
        self.assertEqual(connection._monitoring, {"bob": "Bob"})
        connection.read_markers["#lobby"] = 1
        self.assertEqual(connection._read_markers, {"#lobby": 1})

    def test_reply_queue(self):
        """The reply queue is a list with the deque operations the replies
        use."""
        queue = ReplyQueue()
        queue.append("a")
        queue.append("b")
        self.assertEqual(queue[0], "a")
        self.assertEqual(queue.popleft(), "a")
        self.assertEqual(list(queue), ["b"])
        self.assertFalse(hasattr(queue, "__dict__"))


class LazyImportTests(SynchronousTestCase):
    """What only some configurations use is imported only by them."""

    def imported(self, *arguments):
        """The discovery and fan-out modules imported by building a host
        with C{arguments}, in a fresh interpreter."""
        code = (
            "import sys\n"
            "from twisted.internet import reactor\n"
            "from chatroom.tap import Options, build_service\n"
            "options = Options()\n"
            "options.parseOptions(sys.argv[1:])\n"
            "build_service(reactor, options).store.close()\n"
            "print(' '.join(sorted(m for m in sys.modules\n"
            "    if m.startswith(('chatroom.discovery', 'chatroom.core.discovery',\n"
            "                     'chatroom.fanout', 'chatroom.core.fanout')))))\n"
        )
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                "--data-dir",
                os.path.abspath(self.mktemp()),
                *arguments,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout.split()

    def test_no_discovery_no_fanout(self):
        """A host built with C{--no-discovery} and without C{--fanout}
        imports neither protocol."""
        self.assertEqual(self.imported("--no-discovery"), [])

    def test_fanout(self):
        """With C{--fanout} the fan-out protocol is imported."""
        self.assertIn(
            "chatroom.fanout",
            self.imported("--no-discovery", "--fanout"),
        )
