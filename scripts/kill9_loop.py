#!/usr/bin/env python3
"""kill -9 a real host again and again under load; check nothing shown is lost.

Runs C{twistd -n chatroom} on 127.0.0.1 (discovery on 127.0.0.1 only) with a
few members sending a steady stream of messages, kills it with SIGKILL at a
random moment, restarts it on the same data directory, and repeats.  At the
end it reads the whole history back and checks:

1. every message any member was shown is in history, once, with the
   sequence number it was shown with;
2. sequence numbers strictly increase: in history, and in what each member
   was shown over the whole run, across restarts;
3. the announcement counter T never went back: every announcement heard on
   the group carries a higher T than every one heard before it, and the
   stored reservation never decreases.

Not a CI test: it takes minutes.  Every loop is bounded in count and time.
Usage, from the repository root, with the Python of a venv that has
chatroom's dependencies (the tests' venv of README.rst, "Run the tests";
the system python3 has no Twisted and stops at the first import)::

    .venv-test/bin/python scripts/kill9_loop.py [--kills 100] [--members 3] [--seed N]

The host it starts is this checkout's code (the repository root is put
first on the path), run by that same Python.

Exit status 0 when every check holds; the summary is printed either way.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sqlite3
import ssl
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from chatroom.core.discovery import Announcement, ParseError, parse_datagram  # noqa: E402
from chatroom.core.names import parse_msgid  # noqa: E402
from chatroom.identity import load_or_create  # noqa: E402
from chatroom.service import data_paths  # noqa: E402
from tests.blocking_client import BlockingClient  # noqa: E402
from tests.test_crash import HostProcess  # noqa: E402

GROUP = "239.255.77.77"


class Member(threading.Thread):
    """One member for one life of the host: sends steadily, records what it
    is shown, until the connection drops or C{stop} is set."""

    def __init__(
        self,
        name: str,
        port: int,
        key: bytes,
        interval: float,
        counter: list[int],
        stop: threading.Event,
    ) -> None:
        super().__init__(daemon=True)
        self.name_ = name
        self.port = port
        self.key = key
        self.interval = interval
        self.counter = counter  # [next message number], shared across lives
        self.stop = stop
        self.shown: list[tuple[int, str]] = []
        self.sent: list[str] = []
        self.error: str | None = None

    def run(self) -> None:
        try:
            client = BlockingClient(
                self.port, self.key, self.name_, ("message-tags",), timeout=10.0
            )
            client.send("JOIN", "#lobby")
            client.wait_for(lambda m: m.command == "366")
        except (OSError, ConnectionError, ssl.SSLError, AssertionError):
            return  # killed while joining: nothing shown in this life
        client.sock.settimeout(self.interval)
        deadline = time.monotonic() + 60
        next_send = time.monotonic()
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                if time.monotonic() >= next_send:
                    # A steady rate: one message every interval.
                    next_send += self.interval
                    text = "%s-%d" % (self.name_, self.counter[0])
                    self.counter[0] += 1
                    client.send("PRIVMSG", "#lobby", text)
                    self.sent.append(text)
                try:
                    client.read()
                except socket.timeout:
                    pass
                self._collect(client)
        except (OSError, ConnectionError, ssl.SSLError):
            pass
        self._collect(client)
        client.close()

    def _collect(self, client: BlockingClient) -> None:
        for message in client.messages:
            if message.command == "PRIVMSG" and "msgid" in message.tags:
                parsed = parse_msgid(message.tags["msgid"])
                if parsed is not None:
                    self.shown.append((parsed[1], message.params[1]))
        client.messages.clear()


class AnnouncementListener(threading.Thread):
    """Records the T of every announcement heard on the group (127.0.0.1)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("", port))
        # Joined on the loopback interface only.
        self.sock.setsockopt(
            socket.IPPROTO_IP,
            socket.IP_ADD_MEMBERSHIP,
            socket.inet_aton(GROUP) + socket.inet_aton("127.0.0.1"),
        )
        self.sock.settimeout(0.5)
        self.counters: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                data = self.sock.recv(2048)
            except socket.timeout:
                continue
            try:
                datagram = parse_datagram(data)
            except ParseError:
                continue
            if isinstance(datagram, Announcement):
                self.counters.append(datagram.counter)
        self.sock.close()


def stored_counter(db_path: str) -> int:
    db = sqlite3.connect(db_path)
    try:
        row = db.execute(
            "SELECT value FROM counters WHERE name = 'announcement'"
        ).fetchone()
        return row[0] if row else 0
    finally:
        db.close()


def read_history(port: int, key: bytes) -> list[tuple[int, str]]:
    """Every stored message of #lobby, oldest first, through CHATHISTORY."""
    reader = BlockingClient(
        port, key, "reader", ("message-tags", "batch", "draft/chathistory")
    )
    stored: list[tuple[int, str]] = []
    after = 0
    for _ in range(100000):  # bounded: 100 messages a page
        since = len(reader.messages)
        reader.send(
            "CHATHISTORY", "AFTER", "#lobby", "msgid=lobby:%d" % (after,), "100"
        )
        end = reader.wait_for(
            lambda m: m.command == "BATCH" and m.params[0].startswith("-"), since
        )
        batch = [
            m
            for m in reader.messages[since:]
            if m.tags.get("batch") == end.params[0][1:] and m.command == "PRIVMSG"
        ]
        if not batch:
            break
        for m in batch:
            stored.append((parse_msgid(m.tags["msgid"])[1], m.params[1]))
        after = stored[-1][0]
    reader.close()
    return stored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument(
        "--interval",
        type=float,
        default=0.02,
        help="seconds between one member's messages",
    )
    parser.add_argument(
        "--max-life",
        type=float,
        default=2.0,
        help="longest time the host runs before the kill",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=1800.0,
        help="stop after this many seconds whatever the count",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="kill9-")
    os.makedirs(data_dir, exist_ok=True)
    key_path, db_path = data_paths(data_dir)
    key = load_or_create(key_path).public_key
    group_port = rng.randint(20000, 40000)
    listener = AnnouncementListener(group_port)
    listener.start()
    host_args = [
        "--discovery-interface",
        "127.0.0.1",
        "--discovery-group",
        GROUP,
        "--discovery-port",
        str(group_port),
    ]
    print("kill -9 loop: seed %d, data in %s" % (seed, data_dir), flush=True)

    started = time.monotonic()
    counters = [[0] for _ in range(args.members)]
    shown: dict[str, list[tuple[int, str]]] = {
        "m%d" % i: [] for i in range(args.members)
    }
    sent = 0
    kills = 0
    stored_t: list[int] = []
    t_by_life: list[list[int]] = []
    problems: list[str] = []
    while kills < args.kills and time.monotonic() - started < args.time_limit:
        log_path = os.path.join(data_dir, "host-%03d.log" % (kills,))
        heard_before = len(listener.counters)
        host = _start_host(data_dir, log_path, host_args)
        try:
            port = host.port(timeout=60)
        except AssertionError as e:
            problems.append("life %d: %s" % (kills, e))
            host.stop()
            break
        stop = threading.Event()
        members = [
            Member("m%d" % i, port, key, args.interval, counters[i], stop)
            for i in range(args.members)
        ]
        for member in members:
            member.start()
        time.sleep(rng.uniform(0.05, args.max_life))  # the random moment
        host.kill()
        kills += 1
        stop.set()
        for member in members:
            member.join(30)
            shown[member.name_].extend(member.shown)
            sent += len(member.sent)
        host.stop()
        stored_t.append(stored_counter(db_path))
        t_by_life.append(listener.counters[heard_before:])
        if kills % 10 == 0:
            print(
                "  %d kills, %d messages sent, %d shown, T stored %d"
                % (kills, sent, sum(len(v) for v in shown.values()), stored_t[-1]),
                flush=True,
            )

    # One last clean life to read the history back.
    host = _start_host(data_dir, os.path.join(data_dir, "host-final.log"), host_args)
    try:
        port = host.port(timeout=60)
        history = read_history(port, key)
    finally:
        host.stop()
    listener.done.set()
    listener.join(5)

    # 1. Everything shown is in history, once, with its number.
    by_text: dict[str, list[int]] = {}
    for seq, text in history:
        by_text.setdefault(text, []).append(seq)
    duplicates = {t: s for t, s in by_text.items() if len(s) > 1}
    if duplicates:
        problems.append(
            "%d messages stored more than once, e.g. %r"
            % (len(duplicates), next(iter(duplicates.items())))
        )
    lost = wrong = 0
    for name, seen in shown.items():
        for seq, text in seen:
            if text not in by_text:
                lost += 1
            elif seq not in by_text[text]:
                wrong += 1
    if lost:
        problems.append("%d messages shown to a member are not in history" % (lost,))
    if wrong:
        problems.append("%d messages are stored under another number" % (wrong,))
    # 2. Numbers strictly increase.
    seqs = [seq for seq, _ in history]
    if any(b <= a for a, b in zip(seqs, seqs[1:])):
        problems.append("history numbers do not strictly increase")
    for name, seen in shown.items():
        numbers = [seq for seq, _ in seen]
        if any(b <= a for a, b in zip(numbers, numbers[1:])):
            problems.append("%s was shown numbers that did not increase" % (name,))
    # 3. T never went back.
    # A host may repeat one signed announcement (same T) within a life; a
    # new life must start above everything any earlier life announced.
    heard = listener.counters
    if any(b < a for a, b in zip(heard, heard[1:])):
        problems.append("an announcement lowered T: %r" % (heard,))
    highest = 0
    for number, life in enumerate(t_by_life):
        if life and life[0] <= highest:
            problems.append(
                "life %d announced T %d, not above %d" % (number, life[0], highest)
            )
        highest = max([highest, *life])
    if any(b < a for a, b in zip(stored_t, stored_t[1:])):
        problems.append("the stored announcement counter went back")

    elapsed = time.monotonic() - started
    total_shown = sum(len(v) for v in shown.values())
    lives_heard = sum(1 for life in t_by_life if life)
    print("kills: %d in %.0f s (seed %d)" % (kills, elapsed, seed))
    print(
        "messages sent: %d; stored: %d; shown to members: %d (distinct %d)"
        % (
            sent,
            len(history),
            total_shown,
            len({text for seen in shown.values() for _, text in seen}),
        )
    )
    print(
        "announcements heard: %d, from %d of %d lives; T from %s to %s"
        % (
            len(heard),
            lives_heard,
            len(t_by_life),
            heard[0] if heard else "-",
            heard[-1] if heard else "-",
        )
    )
    if not total_shown or not history:
        problems.append("no message was shown or stored: the load did not run")
    if kills < args.kills:
        problems.append("only %d kills within the time limit" % (kills,))
    if problems:
        print("FAILED:")
        for problem in problems:
            print("  " + problem)
        return 1
    print(
        "OK: every shown message stored once under its number, numbers "
        "strictly increase, T never went back"
    )
    return 0


def _start_host(data_dir: str, log_path: str, extra: list[str]) -> HostProcess:
    host = HostProcess(data_dir, log_path, args=extra, discovery=True)
    return host


if __name__ == "__main__":
    raise SystemExit(main())
