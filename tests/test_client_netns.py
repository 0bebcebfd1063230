"""A client on a link that goes silent, in Linux network namespaces made by the test.

Topology (nothing is added to the machine's own network namespace)::

    H: host 10.62.1.1:6697, and bob ---- veth ---- C: alice 10.62.1.2

An nftables table in C drops every packet on C's veth for a while (no FIN,
no RST: the link just goes silent, as a radio link does), then the test
deletes it.  alice runs the real client API (RoomSession on the real
reactor, with its own client key) with short keepalive times so the test
is quick; bob sits next to the host and keeps talking.

Checked: alice notices the dead link by her keepalive (probe + timeout),
keeps what she typed meanwhile, reconnects when the link returns, sends
what she typed once, and shows every message exactly once and in the
host's order (the same order bob sees).  The host gives the new connection
of the same client key the old one's nick and rooms at once (ghost
takeover), so alice comes back as C{alice}, told of nothing taken.

Needs root, C{ip} (iproute2) and C{nft} (nftables); skips with the reason
otherwise.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from .netns import NamespacesMixin

HOST_ADDRESS = "10.62.1.1"
CLIENT_ADDRESS = "10.62.1.2"
#: alice's keepalive: probe after this many seconds of silence, and give up
#: this many seconds after the probe (the defaults are 30 and 30).
PROBE = 2.0
#: Every wait in this test ends by this many seconds at the latest.
WAIT = 30.0

HOST_SCRIPT = r"""
import json, os, sys
from twisted.internet import reactor, stdio
from twisted.protocols.basic import LineReceiver
from chatroom.history import HistoryStore
from chatroom.host import Limits
from chatroom.identity import load_or_create
from chatroom.service import HostService

data_dir, interface = sys.argv[1:3]
identity = load_or_create(os.path.join(data_dir, "host-key.pem"))
service = HostService(reactor, identity,
                      HistoryStore(os.path.join(data_dir, "history.sqlite3")),
                      ["lobby"], tls_port=6697, tls_interface=interface,
                      limits=Limits(flood_rate=0))

class Control(LineReceiver):
    delimiter = b"\n"
    def connectionLost(self, reason):
        service.stopService().addBoth(lambda _: reactor.stop())

def ready(_):
    print(json.dumps({"ready": identity.public_key.hex()}), flush=True)

def start():
    service.startService()
    service.listening_ports().addCallback(ready)

reactor.callWhenRunning(start)
stdio.StandardIO(Control())
reactor.run()
"""

CLIENT_SCRIPT = r"""
import json, sys
from twisted.internet import reactor, stdio
from twisted.protocols.basic import LineReceiver
from chatroom.client.reconnect import RoomTarget
from chatroom.client.session import RoomSession
from chatroom.identity import ClientIdentity

nick, address, key_hex, probe = sys.argv[1:5]
probe = float(probe)

def emit(**item):
    sys.stdout.write(json.dumps(item) + "\n")
    sys.stdout.flush()

session = RoomSession(
    reactor, RoomTarget(bytes.fromhex(key_hex), "lobby", (address,)), nick,
    on_event=lambda e: emit(event=e.to_json()),
    on_status=lambda s: emit(status=s, nick=session.nick),
    policy=lambda n: 0.5, timeout=2 * probe, probe_interval=probe,
    probe_timeout=probe, identity=ClientIdentity.generate())

class Control(LineReceiver):
    delimiter = b"\n"
    def lineReceived(self, line):
        text = json.loads(line)["say"]
        d = session.say(text)
        d.addCallbacks(
            lambda e: emit(said=text, seq=e.seq if e else None, nick=session.nick),
            lambda f: emit(failed=text, why=str(f.value)))
    def connectionLost(self, reason):
        session.close().addBoth(lambda _: reactor.stop())

reactor.callWhenRunning(lambda: session.connect().addCallbacks(
    lambda _: emit(joined=session.nick),
    lambda f: (emit(error=str(f.value)), reactor.stop())))
stdio.StandardIO(Control())
reactor.run()
"""


class Program:
    """A Python program in a namespace that speaks JSON lines."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.seen: list[dict] = []
        self._buffer = b""

    def send(self, **item) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(item).encode() + b"\n")
        self.process.stdin.flush()

    def _read(self, timeout: float) -> None:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        if select.select([fd], [], [], timeout)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(
                    "the program ended: %s"
                    % (
                        self.process.stderr.read().decode()
                        if self.process.stderr
                        else ""
                    )
                )
            self._buffer += chunk
            *lines, self._buffer = self._buffer.split(b"\n")
            self.seen.extend(json.loads(line) for line in lines if line)

    def expect(self, predicate, what: str) -> dict:
        """The first item seen so far or within L{WAIT} s that matches."""
        deadline = time.monotonic() + WAIT
        checked = 0
        while True:
            for item in self.seen[checked:]:
                if predicate(item):
                    return item
            checked = len(self.seen)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    "no %s within %g s; saw %r" % (what, WAIT, self.seen[-10:])
                )
            self._read(remaining)

    def messages(self) -> list[tuple[int, str]]:
        return [
            (item["event"]["seq"], item["event"]["text"])
            for item in self.seen
            if "event" in item and item["event"]["kind"] == "message"
        ]

    def statuses(self) -> list[str]:
        return [item["status"] for item in self.seen if "status" in item]


class SilentLinkTests(NamespacesMixin, SynchronousTestCase):
    """Issue 12: the client on a flaky wireless link, end to end."""

    def setUp(self) -> None:
        self.make_namespaces("crc", ["h", "c"], {"nft": "nftables"})
        self.link("h", "vh", "c", "vc")
        self.address("h", "vh", HOST_ADDRESS + "/24")
        self.address("c", "vc", CLIENT_ADDRESS + "/24")
        try:
            self.ns_run("c", "nft", "list", "ruleset")
        except RuntimeError as e:
            raise SkipTest(f"nftables does not work here: {e}") from None

    def python_in(self, ns: str, script: str, *args: str) -> Program:  # type: ignore[override]
        return Program(super().python_in(ns, script, *args))

    def silence_link(self) -> None:
        """Drop every packet on C's veth, both ways: no FIN, no RST."""
        self.ns_run("c", "nft", "add", "table", "inet", "silence")
        for chain, hook, match in (
            ("in", "input", "iifname"),
            ("out", "output", "oifname"),
        ):
            self.ns_run(
                "c",
                "nft",
                f"add chain inet silence {chain} "
                f"{{ type filter hook {hook} priority 0; policy accept; }}",
            )
            self.ns_run(
                "c", "nft", "add", "rule", "inet", "silence", chain, match, "vc", "drop"
            )

    def restore_link(self) -> None:
        self.ns_run("c", "nft", "delete", "table", "inet", "silence")

    def test_silent_link_noticed_rejoined_nothing_lost(self) -> None:
        host = self.python_in("h", HOST_SCRIPT, str(self.tmp), HOST_ADDRESS)
        ready = host.expect(lambda i: "ready" in i, "host ready")
        key = ready["ready"]
        address = "%s:6697" % (HOST_ADDRESS,)
        alice = self.python_in("c", CLIENT_SCRIPT, "alice", address, key, str(PROBE))
        bob = self.python_in("h", CLIENT_SCRIPT, "bob", address, key, "30")
        self.assertEqual(
            alice.expect(lambda i: "joined" in i, "join")["joined"], "alice"
        )
        bob.expect(lambda i: "joined" in i, "bob's join")

        def said(program, text):
            program.send(say=text)
            return program.expect(lambda i: i.get("said") == text, text)

        said(alice, "a1")
        said(bob, "b1")
        alice.expect(lambda i: i.get("event", {}).get("text") == "b1", "b1")

        self.silence_link()
        # Typed while the link is dead but before alice knows: it goes into
        # the dead connection and is in doubt.
        alice.send(say="a2 typed into the dead link")
        said(bob, "b2 while alice is cut off")
        lost = alice.expect(
            lambda i: "Lost the connection" in i.get("status", ""),
            "noticing the dead link",
        )
        self.assertIn(
            "no answer from the host for %g s, even to a PING" % (2 * PROBE,),
            lost["status"],
        )
        # Typed while reconnecting: pending.
        alice.send(say="a3 typed while reconnecting")
        alice.expect(
            lambda i: i.get("status", "").startswith("Pending"), "the pending line"
        )
        # Let alice fail an attempt or two on the dead link, then restore it.
        alice.expect(
            lambda i: "Could not reconnect" in i.get("status", ""),
            "a failed attempt while the link is dead",
        )
        self.restore_link()
        back = alice.expect(
            lambda i: "Reconnected" in i.get("status", ""), "reconnecting"
        )
        self.assertIn("nothing lost", back["status"])
        for text in ("a2 typed into the dead link", "a3 typed while reconnecting"):
            alice.expect(lambda i, t=text: i.get("said") == t, text)
        # The host still held the ghost; the same client key took it over.
        self.assertEqual(back["nick"], "alice")
        self.assertFalse([s for s in alice.statuses() if "taken" in s])
        said(bob, "b3 after the link came back")
        alice.expect(
            lambda i: i.get("event", {}).get("text", "").startswith("b3"), "b3"
        )
        bob.expect(
            lambda i: i.get("event", {}).get("text", "").startswith("a3"), "a3 at bob"
        )
        bob.expect(
            lambda i: i.get("event", {}).get("text", "").startswith("b3"), "b3 at bob"
        )

        expected = {
            "a1",
            "b1",
            "a2 typed into the dead link",
            "b2 while alice is cut off",
            "a3 typed while reconnecting",
            "b3 after the link came back",
        }
        shown = alice.messages()
        texts = [text for _, text in shown]
        self.assertEqual(sorted(texts), sorted(expected))  # each exactly once
        seqs = [seq for seq, _ in shown]
        self.assertEqual(seqs, sorted(set(seqs)))  # in the host's order
        self.assertEqual(shown, bob.messages())  # the same conversation
        self.assertLess(
            texts.index("a2 typed into the dead link"),
            texts.index("a3 typed while reconnecting"),
        )
