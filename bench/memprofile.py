#!/usr/bin/env python3
"""Where a chatroom host's memory goes: per idle member, and under load.

Runs the room host in this process on 127.0.0.1 (no discovery, flood control
off, a temporary data directory), with ``tracemalloc`` on, and drives it with
``bench/build/loadgen`` (build it with ``make -C bench``).  It takes the same
three readings with no client and once the generator's N clients have joined
(and, with ``--senders``, during the measured interval):

* ``VmRSS`` from ``/proc/self/status``;
* the C heap from glibc's ``mallinfo2()``: bytes in use by ``malloc`` (OpenSSL's
  allocations, Python objects over 512 bytes, SQLite's page cache) plus
  ``mmap``-ed chunks;
* every Python allocation ``tracemalloc`` traces, by source line.

It prints the difference per client, split into Python allocations and the
rest of the C heap (mostly OpenSSL), and the source lines whose allocations
grew the most, per client.  Bounded in count and time; loopback only::

    python bench/memprofile.py --clients 500            # idle TLS members
    python bench/memprofile.py --clients 500 --plain    # idle plain-text ones
    python bench/memprofile.py --clients 100 --senders 10   # full speed

Profile figures are for finding the cause; resident memory per member is
the benchmark's figure (``bench/run.py``), measured without tracemalloc.
"""

import argparse
import gc
import linecache
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc

from glibc_heap import c_heap

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
LOADGEN = os.path.join(BENCH, "build", "loadgen")


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def reading():
    gc.collect()
    return {
        "rss_kib": rss_kib(),
        "c_heap": c_heap(collect=False),
        "traced": tracemalloc.get_traced_memory()[0],
        "snapshot": tracemalloc.take_snapshot().filter_traces(
            [
                tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
            ]
        ),
    }


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def report(title, before, after, clients, top, callers=()):
    n = max(clients, 1)
    rss = (after["rss_kib"] - before["rss_kib"]) / n
    heap = (after["c_heap"] - before["c_heap"]) / 1024 / n
    traced = (after["traced"] - before["traced"]) / 1024 / n
    print(f"\n{title}: {clients} clients")
    print(f"  RSS growth per client          {rss:8.2f} KiB")
    print(f"  C heap (malloc) per client     {heap:8.2f} KiB")
    print(f"  Python (tracemalloc) per client{traced:8.2f} KiB")
    print(
        f"  C heap not traced by Python    {heap - traced:8.2f} KiB"
        "  (OpenSSL, SQLite, ...; Python's small objects live in"
        " pymalloc arenas outside malloc)"
    )
    print(f"  top {top} source lines by growth, bytes per client:")
    stats = after["snapshot"].compare_to(before["snapshot"], "lineno")
    for stat in stats[:top]:
        frame = stat.traceback[0]
        where = (
            os.path.relpath(frame.filename, REPO)
            if frame.filename.startswith(REPO)
            else frame.filename.split("site-packages/")[-1]
        )
        code = linecache.getline(frame.filename, frame.lineno).strip()[:60]
        print(
            f"  {stat.size_diff / n:9.0f} B {stat.count_diff / n:6.2f} blocks"
            f"  {where}:{frame.lineno}  {code}"
        )
    for spec in callers:
        path, _, line = spec.rpartition(":")
        filt = [tracemalloc.Filter(True, "*" + path, int(line))]
        diffs = (
            after["snapshot"]
            .filter_traces(filt)
            .compare_to(before["snapshot"].filter_traces(filt), "traceback")
        )
        print(f"  allocated at {spec}, by caller, bytes per client:")
        for stat in diffs[:8]:
            chain = " <- ".join(
                f"{os.path.basename(f.filename)}:{f.lineno}" for f in stat.traceback
            )
            print(
                f"  {stat.size_diff / n:9.0f} B {stat.count_diff / n:6.2f} blocks  {chain}"
            )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=500)
    p.add_argument("--senders", type=int, default=0)
    p.add_argument("--rate", type=float, default=0)
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--duration", type=float, default=5)
    p.add_argument(
        "--plain", action="store_true", help="plain-text members instead of TLS"
    )
    p.add_argument(
        "--frames",
        type=int,
        default=1,
        help="tracemalloc frames to keep (more: slower)",
    )
    p.add_argument("--top", type=int, default=25)
    p.add_argument(
        "--callers",
        metavar="FILE:LINE",
        action="append",
        default=[],
        help="also show who allocated at FILE:LINE (a path suffix), "
        "grouped by traceback; needs --frames 2 or more",
    )
    opts = p.parse_args(argv)
    if not os.path.exists(LOADGEN):
        sys.exit(f"{LOADGEN} is missing: run make -C bench")

    tracemalloc.start(opts.frames)
    sys.path.insert(0, REPO)
    from twisted.internet import reactor, task, threads

    from chatroom.tap import Options, makeService

    tmp = tempfile.mkdtemp(prefix="bench-memprofile-")
    tls_port, plain_port = free_port(), free_port()
    argv = [
        "--data-dir",
        os.path.join(tmp, "data"),
        "--room",
        "bench",
        "--interface",
        "127.0.0.1",
        "--port",
        str(tls_port),
        "--no-discovery",
        "--flood-rate",
        "0",
        "--max-clients",
        str(opts.clients + 10),
    ]
    if opts.plain:
        argv += ["--listen", f"tcp:{plain_port}:interface=127.0.0.1"]
    options = Options()
    options.parseOptions(argv)
    service = makeService(options)
    readings = {}

    def drive():
        service.startService()
        yield task.deferLater(reactor, 1.0, lambda: None)
        readings["empty"] = reading()
        gen = [
            LOADGEN,
            "--host",
            "127.0.0.1",
            "--port",
            str(plain_port if opts.plain else tls_port),
            "--clients",
            str(opts.clients),
            "--senders",
            str(opts.senders),
            "--rate",
            str(opts.rate),
            "--window",
            str(opts.window),
            "--duration",
            str(opts.duration),
            "--warmup",
            "1",
            "--settle",
            "3",
            "--drain",
            "10",
            "--connect-timeout",
            "120",
            "--timeout",
            "240",
            "--channel",
            "#bench",
        ] + (["--plain"] if opts.plain else [])
        proc = subprocess.Popen(
            gen, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 240

        def wait_for(text):
            for line in proc.stderr:
                if text in line or time.monotonic() > deadline:
                    return line
            return ""

        line = yield threads.deferToThread(wait_for, "joined in")
        if "joined in" not in line:
            raise RuntimeError(f"generator failed: {line}")
        # Idle: read after the settle time; under load: half-way through.
        yield task.deferLater(
            reactor,
            2.0 if not opts.senders else 1.0 + 2.0 + opts.duration / 2,
            lambda: None,
        )
        readings["loaded"] = reading()
        readings["peak_rss_kib"] = _hwm()
        yield threads.deferToThread(proc.wait, 300)
        yield service.stopService()

    from twisted.internet import defer

    def run():
        d = defer.inlineCallbacks(drive)()
        d.addErrback(lambda f: (print(f.getTraceback(), file=sys.stderr), f)[1])
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    try:
        reactor.run()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if "loaded" not in readings:
        return 1
    kind = "plain-text" if opts.plain else "TLS"
    title = (
        f"{kind}, {opts.senders} senders at "
        f"{'full speed' if not opts.rate else f'{opts.rate} msg/s'}"
        if opts.senders
        else f"idle {kind} members"
    )
    print(
        f"\nempty host: RSS {readings['empty']['rss_kib']} KiB (with tracemalloc),"
        f" peak RSS {readings['peak_rss_kib']} KiB"
    )
    report(
        title,
        readings["empty"],
        readings["loaded"],
        opts.clients,
        opts.top,
        opts.callers,
    )
    return 0


def _hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
