"""Mechanisms that keep the host small on small nodes (docs/benchmarks.rst).

Memory and speed are measured by the benchmark (C{bench/}), never here; these
tests check that each mechanism is in place.
"""

from OpenSSL import SSL
from twisted.trial.unittest import SynchronousTestCase

from chatroom.history import PAGE_CACHE_KIB, HistoryStore
from chatroom.identity import HostIdentity
from chatroom.tls import server_options


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
