#!/usr/bin/env python3
"""What OpenSSL keeps for each idle TLS member of a chatroom host.

In one process, with memory BIOs (no sockets), it makes N server connections
from the host's own context (``chatroom.tls.server_options``), completes a
TLS handshake with N clients, passes one IRC line each way, frees the
clients, and reads the C heap (glibc ``mallinfo2()``) before and after: what
is left is the server side of N idle members.  It does that

* with the OpenSSL that pyOpenSSL uses (the one bundled in the
  ``cryptography`` wheel), with and without ``SSL_MODE_RELEASE_BUFFERS``,
  with a server-side session cache, with clients offering only X25519 or
  P-256 instead of the default hybrid X25519MLKEM768 (OpenSSL 3.0 clients,
  the benchmark's generator among them, get X25519), with a client
  certificate (as chatroom clients send), and with a TLS 1.2 client;
* with the system's ``libssl.so.3`` through ``ctypes`` (Debian 12: OpenSSL
  3.0), with the same kind of certificate (Ed25519), the same options (no
  tickets, session cache off) and the same modes, for comparison.

Usage: ``python bench/tlsmem.py [--connections 300]``.  Nothing touches the
network.
"""

import argparse
import ctypes
import os
import subprocess
import sys
import tempfile

from glibc_heap import c_heap

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)


def wheel(n, release=True, tls12=False, groups=None, client_cert=False, cache=False):
    """(KiB per SSL_new, KiB per idle server connection) with pyOpenSSL.

    @param groups: the key exchange groups the client offers (OpenSSL's
        list syntax), C{None}: the wheel's default (X25519MLKEM768 first).
    @param client_cert: the client presents an Ed25519 certificate, as a
        chatroom client does.
    @param cache: turn the server-side session cache on.
    """
    from OpenSSL import SSL
    from OpenSSL._util import lib

    from chatroom.identity import ClientIdentity, HostIdentity
    from chatroom.tls import server_options

    server_ctx = server_options(HostIdentity.generate()).getContext()
    if not release:
        server_ctx.clear_mode(SSL.MODE_RELEASE_BUFFERS)
    if cache:
        server_ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    client_ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    client_ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
    if tls12:
        client_ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    if groups is not None:
        lib.SSL_CTX_set1_curves_list(client_ctx._context, groups.encode())
    if client_cert:
        identity = ClientIdentity.generate()
        client_ctx.use_certificate(identity.certificate)
        client_ctx.use_privatekey(identity.private_key)

    def pump(src, dst):
        while True:
            try:
                data = src.bio_read(65536)
            except SSL.WantReadError:
                return
            if not data:
                return
            dst.bio_write(data)

    def step(conn, call, *args):
        try:
            return call(*args)
        except SSL.WantReadError:
            return None

    start = c_heap()
    clients = [SSL.Connection(client_ctx, None) for _ in range(n)]
    before = c_heap()
    servers = [SSL.Connection(server_ctx, None) for _ in range(n)]
    created = c_heap()
    for s, c in zip(servers, clients):
        s.set_accept_state()
        c.set_connect_state()
        for _ in range(6):
            step(c, c.do_handshake)
            pump(c, s)
            step(s, s.do_handshake)
            pump(s, c)
        c.send(b"NICK a\r\nUSER a 0 * :a\r\n")
        pump(c, s)
        step(s, s.recv, 65536)
        s.send(b":h 001 a :Welcome\r\n")
        pump(s, c)
        step(c, c.recv, 65536)
        step(s, s.recv, 65536)
    version = servers[0].get_protocol_version_name()
    group = servers[0].get_group_name() or "-"
    del clients[:]
    idle = c_heap()  # the clients are freed: what is left is the servers'
    return (
        f"{version} {group}",
        (created - before) / n / 1024,
        (idle - start) / n / 1024,
    )


def system(n, certdir):
    """The same with the system's libssl.so.3 through ctypes."""
    ssl = ctypes.CDLL("libssl.so.3")
    crypto = ctypes.CDLL("libcrypto.so.3")
    P, I, S = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    sigs = {
        (ssl, "TLS_server_method"): (P, []),
        (ssl, "TLS_client_method"): (P, []),
        (ssl, "SSL_CTX_new"): (P, [P]),
        (ssl, "SSL_new"): (P, [P]),
        (ssl, "SSL_free"): (None, [P]),
        (ssl, "SSL_set_bio"): (None, [P, P, P]),
        (ssl, "SSL_set_accept_state"): (None, [P]),
        (ssl, "SSL_set_connect_state"): (None, [P]),
        (ssl, "SSL_do_handshake"): (I, [P]),
        (ssl, "SSL_read"): (I, [P, S, I]),
        (ssl, "SSL_write"): (I, [P, S, I]),
        (ssl, "SSL_CTX_ctrl"): (ctypes.c_long, [P, I, ctypes.c_long, P]),
        (ssl, "SSL_CTX_set_options"): (ctypes.c_uint64, [P, ctypes.c_uint64]),
        (ssl, "SSL_CTX_use_certificate_file"): (I, [P, S, I]),
        (ssl, "SSL_CTX_use_PrivateKey_file"): (I, [P, S, I]),
        (ssl, "SSL_get_version"): (S, [P]),
        (crypto, "BIO_s_mem"): (P, []),
        (crypto, "BIO_new"): (P, [P]),
        (crypto, "BIO_read"): (I, [P, S, I]),
        (crypto, "BIO_write"): (I, [P, S, I]),
        (crypto, "OpenSSL_version"): (S, [I]),
    }
    for (lib, name), (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    key, cert = os.path.join(certdir, "key.pem"), os.path.join(certdir, "cert.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ed25519",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "2",
            "-subj",
            "/CN=bench",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server_ctx = ssl.SSL_CTX_new(ssl.TLS_server_method())
    client_ctx = ssl.SSL_CTX_new(ssl.TLS_client_method())
    if (
        ssl.SSL_CTX_use_certificate_file(server_ctx, cert.encode(), 1) != 1
        or ssl.SSL_CTX_use_PrivateKey_file(server_ctx, key.encode(), 1) != 1
    ):
        raise RuntimeError("the system OpenSSL cannot load the test certificate")
    SSL_CTRL_MODE, SSL_CTRL_SET_SESS_CACHE_MODE = 33, 44
    modes = 0x10 | 0x1 | 0x2  # RELEASE_BUFFERS, PARTIAL_WRITE, MOVING_BUFFER
    for ctx in (server_ctx, client_ctx):
        ssl.SSL_CTX_ctrl(ctx, SSL_CTRL_MODE, modes, None)
    ssl.SSL_CTX_ctrl(server_ctx, SSL_CTRL_SET_SESS_CACHE_MODE, 0, None)
    ssl.SSL_CTX_set_options(server_ctx, 1 << 14)  # SSL_OP_NO_TICKET, as Twisted
    buf = ctypes.create_string_buffer(65536)

    def make(ctx, accept):
        conn = ssl.SSL_new(ctx)
        rbio, wbio = (
            crypto.BIO_new(crypto.BIO_s_mem()),
            crypto.BIO_new(crypto.BIO_s_mem()),
        )
        ssl.SSL_set_bio(conn, rbio, wbio)
        (ssl.SSL_set_accept_state if accept else ssl.SSL_set_connect_state)(conn)
        return conn, rbio, wbio

    def pump(src, dst):
        while (got := crypto.BIO_read(src[2], buf, 65536)) > 0:
            crypto.BIO_write(dst[1], buf.raw[:got], got)

    start = c_heap()
    clients = [make(client_ctx, False) for _ in range(n)]
    before = c_heap()
    servers = [make(server_ctx, True) for _ in range(n)]
    created = c_heap()
    for s, c in zip(servers, clients):
        for _ in range(6):
            ssl.SSL_do_handshake(c[0])
            pump(c, s)
            ssl.SSL_do_handshake(s[0])
            pump(s, c)
        ssl.SSL_write(c[0], b"NICK a\r\n", 8)
        pump(c, s)
        ssl.SSL_read(s[0], buf, 65536)
        ssl.SSL_write(s[0], b":h 001 a\r\n", 10)
        pump(s, c)
        ssl.SSL_read(c[0], buf, 65536)
        ssl.SSL_read(s[0], buf, 65536)
    version = ssl.SSL_get_version(servers[0][0]).decode()
    for c in clients:
        ssl.SSL_free(c[0])
    idle = c_heap()
    for s in servers:
        ssl.SSL_free(s[0])
    return (
        crypto.OpenSSL_version(0).decode(),
        version,
        (created - before) / n / 1024,
        (idle - start) / n / 1024,
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=300)
    opts = p.parse_args(argv)
    sys.path.insert(0, REPO)
    from OpenSSL import SSL
    from OpenSSL._util import ffi, lib

    wheel_version = ffi.string(lib.OpenSSL_version(0)).decode()
    n = opts.connections
    print(f"per idle server connection, C heap, {n} connections")
    print(f"{'OpenSSL':40} {'case':52} {'SSL_new KiB':>12} {'idle KiB':>9}")
    for label, kwargs in (
        ("host", {}),
        ("without RELEASE_BUFFERS", {"release": False}),
        ("session cache on", {"cache": True}),
        ("client offers X25519 only", {"groups": "X25519"}),
        ("client offers P-256 only", {"groups": "P-256"}),
        ("client certificate", {"client_cert": True}),
        ("TLS 1.2 client", {"tls12": True}),
    ):
        version, new, idle = wheel(n, **kwargs)
        print(
            f"{wheel_version + ' (pyOpenSSL)':40} {label + ', ' + version:52} "
            f"{new:12.2f} {idle:9.2f}"
        )
    del SSL
    with tempfile.TemporaryDirectory(prefix="bench-tlsmem-") as tmp:
        try:
            name, version, new, idle = system(n, tmp)
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            print(f"system OpenSSL not measured: {e}")
        else:
            print(
                f"{name + ' (system)':40} {'RELEASE_BUFFERS, ' + version:52} "
                f"{new:12.2f} {idle:9.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
