"""The client's multicast delivery over a real link with real loss, in Linux
network namespaces made by the test itself.

Topology (nothing is added to the machine's own namespace, so no datagram
can reach a real interface)::

    H (host)  10.63.0.1 ---- veth ---- 10.63.0.2  M (member)

H runs the fake fan-out host of C{tests/fanout_fakes.py} (the real pure
L{FanoutSender}; IRC over plain TCP, since the client's TLS is tested
elsewhere) and sends its datagrams to the group out of 10.63.0.1 with TTL 1.
M runs a real L{RoomSession} whose multicast delivery joins the group on
10.63.0.2.  Loss is real (this kernel has no netem): an nftables rule in M
drops one datagram in ten at random, and one in H drops every datagram of
a burst of 50 events.  The member must show every event exactly once, in
order, and stay on multicast delivery.  Needs root, C{ip} (iproute2) and
C{nft} (nftables); skips with the reason otherwise.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from .netns import NamespacesMixin

HOST_ADDRESS = "10.63.0.1"
MEMBER_ADDRESS = "10.63.0.2"
IRC_PORT = 6667

PHASES = (("steady", 150), ("burst", 50), ("after", 100))

HOST_SCRIPT = r"""
import json, subprocess, sys
from twisted.internet import defer, protocol, reactor, stdio, task
from twisted.protocols.basic import LineReceiver
from tests.fanout_fakes import FanoutRoomHost, HostConnection, GROUP, PORT

INTERFACE, IRC_PORT = sys.argv[1], int(sys.argv[2])
PHASES = json.loads(sys.argv[3])
host = FanoutRoomHost(reactor)
out = {"datagrams": 0}


class GroupSender(protocol.DatagramProtocol):
    def startProtocol(self):
        self.transport.setTTL(1)
        self.transport.setLoopbackMode(False)
        self.ready = defer.maybeDeferred(
            self.transport.setOutgoingInterface, INTERFACE)


class RealAir:
    def send(self, data):
        out["datagrams"] += 1
        try:
            sender.transport.write(data, (GROUP, PORT))
        except OSError:
            # The burst's nftables output rule makes sendto fail (EPERM).
            out["send_errors"] = out.get("send_errors", 0) + 1


sender = GroupSender()
reactor.listenMulticast(0, sender, interface=INTERFACE)
host.air = RealAir()
factory = protocol.Factory()
factory.buildProtocol = lambda addr: HostConnection(host)
reactor.listenTCP(IRC_PORT, factory, interface=INTERFACE)
turns = task.LoopingCall(host.end_turn)
turns.start(0.01)


def nft(*args):
    subprocess.run(["nft", *args], check=True, timeout=10)


@defer.inlineCallbacks
def post_all():
    while not any(r.verb == "START" for _, r in host.requests):
        yield task.deferLater(reactor, 0.05, lambda: None)
    for phase, count in PHASES:
        if phase == "burst":
            nft("add", "table", "inet", "burst")
            nft("add", "chain", "inet", "burst", "out",
                "{ type filter hook output priority 0 ; }")
            nft("add", "rule", "inet", "burst", "out", "udp", "dport",
                str(PORT), "counter", "drop")
        for i in range(count):
            host.say("bob", "%s %d" % (phase, i))
            host.end_turn()
            yield task.deferLater(reactor, 0.01, lambda: None)
        if phase == "burst":
            listing = subprocess.run(
                ["nft", "list", "table", "inet", "burst"], check=True,
                timeout=10, capture_output=True, text=True).stdout
            out["burst_dropped"] = int(
                listing.split("counter packets ")[1].split()[0])
            nft("delete", "table", "inet", "burst")
    host.say("bob", "done")
    host.end_turn()


class Control(LineReceiver):
    delimiter = b"\n"

    def connectionLost(self, reason):
        out["requests"] = [r.verb for _, r in host.requests]
        print(json.dumps(out), flush=True)
        reactor.stop()


def failed(failure):
    out["error"] = failure.getTraceback()


sender.ready.addCallback(lambda _: print("ready", flush=True))
post_all().addErrback(failed)
stdio.StandardIO(Control())
reactor.run()
"""

MEMBER_SCRIPT = r"""
import json, sys
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from chatroom.client.fanout import FanoutOptions
from chatroom.client.reconnect import RoomTarget
from chatroom.client.session import RoomSession
from tests.fanout_fakes import Q

INTERFACE, HOST, IRC_PORT = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = {"events": [], "status": []}


def on_event(event):
    if event.kind == "message":
        out["events"].append([event.seq, event.text])
        if event.text == "done":
            reactor.callLater(0.5, finish)


def finish():
    out["mode"] = session.fanout.mode
    receiver = session.fanout.receiver
    out["accepted"] = receiver.accepted if receiver else 0
    out["drops"] = dict(receiver.drops) if receiver else {}
    d = session.close()
    d.addBoth(lambda _: reactor.stop())


def give_up():
    out["error"] = "no 'done' event within 60 s"
    finish()


session = RoomSession(
    reactor, RoomTarget(Q, "lobby", ("%s:%d" % (HOST, IRC_PORT),), 1), "alice",
    endpoint_for=lambda address, creator: TCP4ClientEndpoint(
        reactor, HOST, IRC_PORT),
    fanout=FanoutOptions(interface=INTERFACE), on_event=on_event,
    on_status=out["status"].append, recent=0)
d = session.connect()
d.addErrback(lambda f: (out.__setitem__("error", str(f.value)), reactor.stop()))
reactor.callLater(60, give_up)
reactor.run()
print(json.dumps(out), flush=True)
"""


class RealLinkLossTests(NamespacesMixin, SynchronousTestCase):
    """Issue 10, "Loss", on a real link between network namespaces."""

    def setUp(self) -> None:
        self.make_namespaces("crf", ["h", "m"], {"nft": "nftables"})
        self.link("h", "vh", "m", "vm")
        self.address("h", "vh", HOST_ADDRESS + "/24")
        self.address("m", "vm", MEMBER_ADDRESS + "/24")

    def test_random_loss_and_burst_exactly_once_in_order(self) -> None:
        # One datagram in ten dropped at random as it reaches the member.
        self.ns_run("m", "nft", "add", "table", "inet", "loss")
        self.ns_run(
            "m",
            "nft",
            "add",
            "chain",
            "inet",
            "loss",
            "in",
            "{ type filter hook input priority 0 ; }",
        )
        self.ns_run(
            "m",
            "nft",
            "add",
            "rule",
            "inet",
            "loss",
            "in",
            "udp",
            "dport",
            "47668",
            "numgen",
            "random",
            "mod",
            "10",
            "==",
            "0",
            "counter",
            "drop",
        )

        host = self.python_in(
            "h", HOST_SCRIPT, HOST_ADDRESS, str(IRC_PORT), json.dumps(PHASES), text=True
        )
        assert host.stdout is not None and host.stdin is not None
        line = host.stdout.readline()
        if line.strip() != "ready":
            host.kill()
            self.fail(f"host did not start: {line!r} {host.communicate()[1]}")
        member = self.python_in(
            "m", MEMBER_SCRIPT, MEMBER_ADDRESS, HOST_ADDRESS, str(IRC_PORT), text=True
        )
        out, err = member.communicate(timeout=90)
        self.assertEqual(member.returncode, 0, err)
        result = json.loads(out.strip().splitlines()[-1])
        host_out, host_err = host.communicate(timeout=30)
        host_result = json.loads(host_out.strip().splitlines()[-1])
        self.assertNotIn("error", host_result, host_result.get("error"))
        self.assertNotIn("error", result, (result, err))

        expected = [
            "%s %d" % (phase, i) for phase, count in PHASES for i in range(count)
        ] + ["done"]
        seqs = [seq for seq, _ in result["events"]]
        self.assertEqual([text for _, text in result["events"]], expected)
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))))
        self.assertEqual(result["mode"], "multicast", result["status"])
        self.assertIn(
            "Receiving #lobby by multicast (group 239.255.67.70"
            " port 47668 on 10.63.0.2).",
            result["status"],
        )
        self.assertGreater(result["accepted"], 0)
        # Loss really happened on the link, and was repaired over TCP.
        ruleset = self.ns_run("m", "nft", "list", "ruleset")
        dropped = int(ruleset.split("counter packets ")[1].split()[0])
        self.assertGreater(dropped, 0, ruleset)
        self.assertGreaterEqual(host_result["burst_dropped"], 50)
        self.assertIn("REPAIR", host_result["requests"])
        self.assertEqual(host.returncode, 0, host_err)
