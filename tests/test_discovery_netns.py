"""Multi-hop discovery test in Linux network namespaces made by the test itself.

Topology, all inside fresh namespaces (nothing is added to the machine's own
network namespace, so no datagram can reach a real interface)::

    A (host) --- R1 --- R2 --- B (searcher)
    10.61.1.2   smcrouted  smcrouted  10.61.3.2

R1 and R2 forward unicast and, with Debian's ``smcroute``, the discovery
group.  A query from B with TTL 1 dies at R2 and with TTL 2 at R1; TTL 4
reaches A, whose answer comes back by unicast.  Needs root, ``ip``
(iproute2) and ``smcrouted`` (smcroute); skips with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time

from twisted.trial.unittest import SynchronousTestCase

from .netns import NamespacesMixin

GROUP = "239.255.42.7"
PORT = 47667

HOST_SCRIPT = r"""
import sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet import reactor
from chatroom.discovery import DiscoveryService, HostProtocol
import itertools

counter = itertools.count(1)
host = HostProtocol(
    reactor, sys.argv[1], int(sys.argv[2]), sys.argv[3],
    Ed25519PrivateKey.from_private_bytes(b"\x01" * 32), lambda: next(counter),
    ["lobby"], [sys.argv[3] + ":6697"], ttl=1,
)
service = DiscoveryService(reactor, host)

def ready(_):
    print("ready", flush=True)

def stop():
    d = service.stopService()
    d.addBoth(lambda _: reactor.stop())

reactor.callWhenRunning(service.startService)
reactor.callWhenRunning(lambda: host.ready.addCallback(ready))
from twisted.internet import stdio
from twisted.protocols.basic import LineReceiver

class Control(LineReceiver):
    delimiter = b"\n"
    def connectionLost(self, reason):
        stop()

stdio.StandardIO(Control())
reactor.run()
"""

SEARCH_SCRIPT = r"""
import json, sys
from twisted.internet import reactor
from chatroom.core.search import Ring
from chatroom.discovery import DiscoveryService, ListenerProtocol

listener = ListenerProtocol(reactor, sys.argv[1], int(sys.argv[2]), sys.argv[3])
service = DiscoveryService(reactor, listener)
rings = [Ring(1, 1.5), Ring(2, 1.5), Ring(4, 3.0)]
out = {}

def search(_):
    return listener.search(room="lobby", rings=rings)

def report(result):
    out["state"] = result.state.value
    out["ttl"] = result.ttl
    out["rings_tried"] = result.rings_tried
    if result.announcement is not None:
        out["addresses"] = [str(a) for a in result.announcement.addresses]
    out["drops"] = dict(listener.drops)

def fail(failure):
    out["error"] = failure.getTraceback()

def finish(_):
    d = service.stopService()
    d.addBoth(lambda _: reactor.stop())

def go():
    service.startService()
    d = listener.ready
    d.addCallback(search)
    d.addCallback(report)
    d.addErrback(fail)
    d.addBoth(finish)

reactor.callWhenRunning(go)
reactor.run()
print(json.dumps(out), flush=True)
"""


class MultiHopSearchTests(NamespacesMixin, SynchronousTestCase):
    """Expanding-ring search over two routed multicast hops."""

    def setUp(self) -> None:
        self.make_namespaces("crd", ["a", "r1", "r2", "b"], {"smcrouted": "smcroute"})
        self.build_topology()

    def build_topology(self) -> None:
        """Make A-R1-R2-B with veth pairs, addresses, routes and smcrouted."""
        links = [
            ("a", "va", "r1", "r1a"),
            ("r1", "r1b", "r2", "r2a"),
            ("r2", "r2b", "b", "vb"),
        ]
        for left, left_if, right, right_if in links:
            self.link(left, left_if, right, right_if)
        addresses = [
            ("a", "va", "10.61.1.2/24"),
            ("r1", "r1a", "10.61.1.1/24"),
            ("r1", "r1b", "10.61.2.1/24"),
            ("r2", "r2a", "10.61.2.2/24"),
            ("r2", "r2b", "10.61.3.1/24"),
            ("b", "vb", "10.61.3.2/24"),
        ]
        for name, interface, address in addresses:
            self.address(name, interface, address)
        self.ns_run("a", "ip", "route", "add", "default", "via", "10.61.1.1")
        self.ns_run("b", "ip", "route", "add", "default", "via", "10.61.3.1")
        self.ns_run("r1", "ip", "route", "add", "10.61.3.0/24", "via", "10.61.2.2")
        self.ns_run("r2", "ip", "route", "add", "10.61.1.0/24", "via", "10.61.2.1")
        for router, (up, down) in (("r1", ("r1a", "r1b")), ("r2", ("r2a", "r2b"))):
            self.ns_run(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            self.start_smcrouted(router, up, down)

    def start_smcrouted(self, router: str, up: str, down: str) -> None:
        """Start smcrouted in ``router`` forwarding the group both ways and
        wait until it answers on its control socket."""
        conf = self.tmp / f"{router}.conf"
        conf.write_text(
            f"phyint {up} enable ttl-threshold 1\n"
            f"phyint {down} enable ttl-threshold 1\n"
            f"mroute from {up} group {GROUP}/32 to {down}\n"
            f"mroute from {down} group {GROUP}/32 to {up}\n"
        )
        sock = self.tmp / f"{router}.sock"
        process = subprocess.Popen(
            [
                "ip", "netns", "exec", self.ns[router], "smcrouted", "-n", "-N",
                "-f", str(conf), "-i", self.ns[router],
                "-P", str(self.tmp / f"{router}.pid"), "-u", str(sock),
                "-l", "notice",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        self.processes.append(process)
        # In the foreground smcrouted logs to stderr; forwarding is active
        # once it logs "Ready".  Read the raw pipe (no Python buffering, so
        # select() sees every byte).
        assert process.stderr is not None
        fd = process.stderr.fileno()
        seen = b""
        deadline = time.monotonic() + 15
        while b"Ready" not in seen:
            remaining = deadline - time.monotonic()
            readable = select.select([fd], [], [], max(0.0, remaining))[0]
            chunk = os.read(fd, 4096) if readable else b""
            if not chunk:
                self.fail(f"smcrouted in {router} did not become ready: {seen!r}")
            seen += chunk

    def test_wider_ring_finds_host_two_routers_away(self) -> None:
        """TTL 1 and 2 do not reach the host behind two routers; the TTL 4
        ring does, and the answer comes back across both routers."""
        host = self.python_in(
            "a", HOST_SCRIPT, GROUP, str(PORT), "10.61.1.2", text=True
        )
        assert host.stdout is not None
        line = host.stdout.readline()
        if line.strip() != "ready":
            host.kill()
            self.fail(f"host did not start: {line!r} {host.communicate()[1]}")

        searcher = self.python_in(
            "b", SEARCH_SCRIPT, GROUP, str(PORT), "10.61.3.2", text=True
        )
        out, err = searcher.communicate(timeout=60)
        self.assertEqual(searcher.returncode, 0, err)
        result = json.loads(out.strip().splitlines()[-1])
        self.assertNotIn("error", result, result.get("error"))
        self.assertEqual(result["state"], "found", result)
        self.assertEqual(result["ttl"], 4)
        self.assertEqual(result["rings_tried"], 3)
        self.assertEqual(result["addresses"], ["10.61.1.2:6697"])
        self.assertEqual(result["drops"], {})

        assert host.stdin is not None
        host.stdin.close()
        host.wait(timeout=10)
        self.assertEqual(host.returncode, 0, host.stderr.read() if host.stderr else "")
