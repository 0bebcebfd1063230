#!/usr/bin/env python3
"""Start ``twistd chatroom`` with an experimental change patched in at run time.

For measuring a change to files that are being rewritten elsewhere before it
is written into them: ``bench/run.py --experiment NAME=VALUE`` starts the
server ``experiment`` with this script, next to the unchanged ``chatroom`` in
the same run.  Nothing here is part of chatroom.

Experiments:

``output-budget=KIB``
    A host-wide bound on output that members have not yet taken.  Each
    submitted event adds an estimate of its output (128 bytes per member of
    its audience) to the turn's total, and after each turn's commit and
    delivery the total is set to the bytes actually queued in all members'
    TCP transports.  While the total exceeds KIB the host stops reading from
    every client (their input waits in the kernel, as it does for a busy C
    server), checks every millisecond, and reads again once the queue is
    below a quarter of KIB.  Members paused by their own slow-reader limit
    stay paused.

``turn-events=N``
    At most N events are committed and delivered per reactor turn; the rest
    stay queued, in order, for the next turn (after the reactor has written
    what it could to the sockets), and the host stops reading from every
    client while more than N events are queued.  Combine with
    ``output-budget`` to also wait for the sockets to take the output.

``tls-unbuffered=1``
    TLS connections use Twisted's plain ``TLSMemoryBIOProtocol`` instead of
    its default ``BufferingTLSTransport``, which holds every write smaller
    than 64 kB for one more reactor turn (a ``callLater(0)`` per connection
    and write).  The host already writes once per member per turn, so that
    second aggregation only adds a turn of delay and a timer per member.

``eager-send=1``
    A TCP write whose connection has nothing queued goes to the socket at
    once (one C{send}) instead of being queued for the reactor's next turn
    (C{epoll_ctl} to watch for writability, C{send}, C{epoll_ctl} to stop).
    Only what the socket does not take is queued the usual way.

``read-size=BYTES``
    Each TCP connection reads at most BYTES per reactor turn (Twisted's
    ``bufferSize``, 64 KiB, which also sets when a streaming producer is
    paused), so one turn parses fewer lines from a fast sender.

``nodelay=0``
    Member connections keep Nagle's algorithm (the host does not set
    ``TCP_NODELAY``), as ngircd and InspIRCd do: what it costs at light load
    in CPU (one loopback packet, receive path and wake-up per member and
    turn) against what it costs in latency (a small write waits for the
    previous one's ACK, which the peer may delay by up to 40 ms).

``malloc-trim=SECONDS``
    Every SECONDS, ask glibc to return free heap memory to the system
    (``malloc_trim(0)``), so that a burst's freed buffers stop counting in
    the resident memory.

``memlog=PATH``
    Every 0.2 s, append to PATH the resident memory (``VmRSS``, ``VmHWM``),
    glibc's heap (``mallinfo2``: arena, in use, mmapped), Python's allocated
    blocks, and the most events one flush handled since the last line: a
    probe for what grows, changing nothing.

Usage: ``experiment_host.py NAME=VALUE [...] -- TWISTD_ARGS...``.
"""

import sys


def _queued(connection):
    """Bytes written to C{connection} that its TCP socket has not taken."""
    transport = connection.transport
    tcp = getattr(transport, "transport", None) or transport  # under TLS
    try:
        return len(tcp.dataBuffer) - tcp.offset + tcp._tempDataLen
    except AttributeError:
        return 0


def _closing(connection):
    """Whether C{connection} is closing or closed (or never opened)."""
    lifecycle = connection.lifecycle
    return lifecycle is None or not lifecycle.open


def _holding(connection):
    """Whether C{connection}'s own limits hold it paused: output held for a
    full socket, or lines delayed by flood control."""
    guard = connection._guard
    return guard is not None and (guard._held is not None or bool(guard._delayed))


def output_budget(kib):
    from chatroom.host import RoomHost

    limit = int(kib) * 1024
    original = RoomHost.flush
    original_submit = RoomHost.submit

    def resume_when_drained(host):
        if sum(_queued(c) for c in host.connections) > limit // 4:
            host._budget_call = host.clock.callLater(0.001, resume_when_drained, host)
            return
        host._budget_call = None
        host.count("output-budget-resumed")
        for c in list(host.connections):
            if not _closing(c) and not _holding(c):
                c.transport.resumeProducing()

    def pause(host):
        host.count("output-budget-paused")
        for c in list(host.connections):
            if not _closing(c):
                c.transport.pauseProducing()
        host._budget_call = host.clock.callLater(0.001, resume_when_drained, host)

    def submit(self, event):
        original_submit(self, event)
        self._budget_total = getattr(self, "_budget_total", 0) + 128 * len(
            event.audience or ()
        )
        if self._budget_total > limit and getattr(self, "_budget_call", None) is None:
            pause(self)

    def flush(self):
        original(self)
        self._budget_total = total = sum(_queued(c) for c in self.connections)
        if total > limit and getattr(self, "_budget_call", None) is None:
            pause(self)

    RoomHost.flush = flush
    RoomHost.submit = submit


def turn_events(count):
    from chatroom.host import RoomHost

    limit = int(count)
    original = RoomHost.flush

    def set_reading(host, on):
        if getattr(host, "_turn_paused", False) == (not on):
            return
        host._turn_paused = not on
        for c in list(host.connections):
            if _closing(c):
                continue
            if not on:
                c.transport.pauseProducing()
            elif not _holding(c) and not getattr(host, "_budget_call", None):
                c.transport.resumeProducing()

    def flush(self):
        if len(self._pending) <= limit:
            original(self)
            set_reading(self, True)
            return
        rest, self._pending = self._pending[limit:], self._pending[:limit]
        original(self)
        self._pending = rest + self._pending
        set_reading(self, False)
        if self._flush_call is None:
            self._flush_call = self.clock.callLater(0, self.flush)

    RoomHost.flush = flush


def tls_unbuffered(value):
    from twisted.protocols import tls

    if value not in ("", "0"):
        tls.TLSMemoryBIOFactory.protocol = tls.TLSMemoryBIOProtocol


def eager_send(value):
    from twisted.internet import tcp

    if value in ("", "0"):
        return
    original = tcp.Connection.write

    def write(self, data):
        if (
            data
            and self.connected
            and not self.disconnecting
            and not self._writeDisconnected
            and not self._tempDataBuffer
            and self.offset == len(self.dataBuffer)
        ):
            try:
                sent = self.socket.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        original(self, data)

    tcp.Connection.write = write


def read_size(value):
    from twisted.internet import tcp

    tcp.Server.bufferSize = int(value)


def nodelay(value):
    if value not in ("", "0"):
        return
    from chatroom import ircserver

    ircserver._set_no_delay = lambda transport: None


def malloc_trim(seconds):
    import ctypes

    from twisted.internet import reactor, task

    libc = ctypes.CDLL("libc.so.6")
    loop = task.LoopingCall(libc.malloc_trim, 0)
    reactor.callWhenRunning(loop.start, float(seconds), now=False)


def memlog(path):
    import sys as _sys

    from twisted.internet import reactor, task

    sys.path.insert(0, __import__("os").path.dirname(__file__))
    from glibc_heap import _libc

    from chatroom.host import RoomHost

    most = [0]
    original = RoomHost.flush

    def flush(self):
        most[0] = max(most[0], len(self._pending))
        original(self)

    RoomHost.flush = flush
    out = open(path, "a")

    def line():
        status = {}
        with open("/proc/self/status") as f:
            for row in f:
                key, _, value = row.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    status[key] = int(value.split()[0])
        info = _libc.mallinfo2()
        out.write(
            "rss %d hwm %d arena %d inuse %d mmap %d pyblocks %d turn %d\n"
            % (
                status["VmRSS"],
                status["VmHWM"],
                info.arena // 1024,
                info.uordblks // 1024,
                info.hblkhd // 1024,
                _sys.getallocatedblocks(),
                most[0],
            )
        )
        out.flush()
        most[0] = 0

    loop = task.LoopingCall(line)
    reactor.callWhenRunning(loop.start, 0.2)


EXPERIMENTS = {
    "output-budget": output_budget,
    "turn-events": turn_events,
    "tls-unbuffered": tls_unbuffered,
    "malloc-trim": malloc_trim,
    "eager-send": eager_send,
    "read-size": read_size,
    "nodelay": nodelay,
    "memlog": memlog,
}


def main(argv):
    if "--" not in argv:
        sys.exit(__doc__)
    split = argv.index("--")
    for spec in argv[:split]:
        name, _, value = spec.partition("=")
        if name not in EXPERIMENTS:
            sys.exit(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
        EXPERIMENTS[name](value)
    from twisted.scripts.twistd import run

    sys.argv = ["twistd"] + argv[split + 1 :]
    sys.exit(run())


if __name__ == "__main__":
    main(sys.argv[1:])
