#!/usr/bin/env python3
"""The least CPU any Python host can spend per delivery at light load.

The benchmark's light load (``n100_k10_rate20``: 100 members, 200 messages
a second) costs the chatroom host about 42 ms of CPU per 1000 deliveries,
ngircd about 13.5.  This script measures what is left when everything
chatroom and Twisted do is taken away: one process holds N loopback TCP
connections to a reader process (``--readers`` processes share them) and,
for each message, writes one IRC line to every connection, nothing else:

``plain``
    ``socket.send`` of the line.
``tls``
    pyOpenSSL with memory BIOs, as Twisted's TLS does it: ``send`` (one
    TLS record), ``bio_read``, ``socket.send``.  The host's own context
    (``chatroom.tls.server_options``), TLS 1.3.

each with and without ``TCP_NODELAY``.  Messages are spaced ``--interval``
seconds apart, so that the readers are asleep when a line arrives, as
they are at light load.  What is printed is the sending process's CPU time
(``time.process_time``: user and system, including the kernel's loopback
delivery, which runs in the sender's system call) per 1000 deliveries.

Usage: ``python bench/sendfloor.py [--members 100] [--messages 400]``.
Nothing leaves 127.0.0.1.
"""

import argparse
import os
import selectors
import socket
import ssl
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
LINE = b":nick!user@host PRIVMSG #bench :" + b"x" * 64 + b"\r\n"


def reader(port, count, use_tls, ready_w):
    """Open C{count} connections, then read until every one is closed."""
    sel = selectors.DefaultSelector()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        if use_tls:
            sock = context.wrap_socket(sock)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
    os.write(ready_w, b"r")
    open_count = count
    while open_count:
        for key, _ in sel.select(timeout=30):
            sock = key.fileobj
            while True:
                try:
                    data = sock.recv(65536)
                except (ssl.SSLWantReadError, BlockingIOError):
                    break
                except (ssl.SSLError, OSError):
                    data = b""
                if not data:
                    sel.unregister(sock)
                    sock.close()
                    open_count -= 1
                    break
    os._exit(0)


def run(members, messages, interval, use_tls, nodelay, readers):
    sys.path.insert(0, REPO)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(members)
    port = listener.getsockname()[1]
    ready_r, ready_w = os.pipe()
    children = []
    share = [members // readers + (i < members % readers) for i in range(readers)]
    for count in share:
        pid = os.fork()
        if pid == 0:
            listener.close()
            reader(port, count, use_tls, ready_w)
        children.append(pid)
    context = None
    if use_tls:
        from OpenSSL import SSL

        from chatroom.identity import HostIdentity
        from chatroom.tls import server_options

        context = server_options(HostIdentity.generate()).getContext()
    conns = []
    for _ in range(members):
        sock, _ = listener.accept()
        tls = None
        if context is not None:
            tls = SSL.Connection(context, None)
            tls.set_accept_state()
            while True:
                try:
                    tls.do_handshake()
                    break
                except SSL.WantReadError:
                    try:
                        out = tls.bio_read(65536)
                        sock.sendall(out)
                    except SSL.WantReadError:
                        pass
                    tls.bio_write(sock.recv(65536))
            try:
                sock.sendall(tls.bio_read(65536))
            except SSL.WantReadError:
                pass
        if nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conns.append((sock, tls))
    for _ in share:
        os.read(ready_r, 1)
    spent = 0.0
    for _ in range(messages):
        time.sleep(interval)
        start = time.process_time()
        for sock, tls in conns:
            if tls is None:
                sock.send(LINE)
            else:
                tls.send(LINE)
                sock.send(tls.bio_read(65536))
        spent += time.process_time() - start
    for sock, tls in conns:
        sock.close()
    for pid in children:
        os.waitpid(pid, 0)
    return spent / (members * messages) * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--interval", type=float, default=0.005, help="seconds")
    parser.add_argument("--readers", type=int, default=1)
    args = parser.parse_args()
    print("path   TCP_NODELAY  CPU ms per 1000 deliveries")
    for use_tls in (False, True):
        for nodelay in (True, False):
            cost = run(
                args.members,
                args.messages,
                args.interval,
                use_tls,
                nodelay,
                args.readers,
            )
            print(
                "%-6s %-12s %6.1f"
                % ("tls" if use_tls else "plain", "on" if nodelay else "off", cost)
            )


if __name__ == "__main__":
    main()
