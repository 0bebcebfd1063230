"""Running as a systemd service: the units parse, and the host serves TLS on
a socket it inherits the way systemd passes one (socket activation)."""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys

from cryptography import x509
from twisted.trial.unittest import SynchronousTestCase

from chatroom.core.ircline import format_line
from chatroom.identity import load_or_create, public_key_of
from chatroom.service import data_paths

from .test_crash import REPO, TWISTD, HostProcess

UNITS = os.path.join(REPO, "contrib", "systemd")


def _unit(name):
    with open(os.path.join(UNITS, name)) as f:
        return f.read()


class UnitFileTests(SynchronousTestCase):
    """contrib/systemd: what the units say, and that systemd accepts them."""

    def test_service_settings(self):
        service = _unit("chatroom.service")
        socket_unit = _unit("chatroom.socket")
        for setting in (
            "DynamicUser=yes",
            "User=chatroom",
            "StateDirectory=chatroom",
            "Restart=on-failure",
            "Requires=chatroom.socket",
        ):
            self.assertIn("\n" + setting + "\n", service)
        # The service asks for the socket by the name the socket unit gives it.
        name = re.search(r"^FileDescriptorName=(\S+)$", socket_unit, re.M).group(1)
        self.assertIn("--tls-endpoint systemd:domain=INET6:name=%s" % (name,), service)
        self.assertIn("--data-dir /var/lib/chatroom", service)

    def test_systemd_analyze_verify(self):
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise self.skipTest("systemd-analyze is not installed (Debian: systemd)")
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        if not os.path.exists(twistd):
            raise self.skipTest("no twistd script next to %s" % (sys.executable,))
        # verify checks that ExecStart's program exists: point the unit's
        # /opt/chatroom/bin/twistd at the twistd of this environment.
        directory = self.mktemp()
        os.makedirs(directory)
        for name in ("chatroom.socket", "chatroom.service"):
            with open(os.path.join(directory, name), "w") as f:
                f.write(_unit(name).replace("/opt/chatroom/bin/twistd", twistd))
        result = subprocess.run(
            [
                analyze,
                "verify",
                os.path.join(directory, "chatroom.socket"),
                os.path.join(directory, "chatroom.service"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        # systemd-analyze exits 0 on unknown keys and bad values, but says
        # so: a clean unit prints nothing.
        self.assertEqual(
            (result.returncode, result.stderr.strip()), (0, ""), result.stdout
        )


def _inherit(listener, args, data_dir, log_path):
    """Start the host with C{listener} as fd 3, LISTEN_FDS=1, LISTEN_PID of
    the host process and LISTEN_FDNAMES=tls, as systemd passes a socket."""
    fd = listener.fileno()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    env.update(LISTEN_FDS="1", LISTEN_FDNAMES="tls")
    # sh execs the host, so $$ is the host's PID; "3<&N" puts the socket on
    # fd 3 (SD_LISTEN_FDS_START).
    script = 'LISTEN_PID=$$ exec "$@" 3<&%d %d<&-' % (fd, fd)
    host = HostProcess.__new__(HostProcess)
    host.log = open(log_path, "ab")
    host.log_path = log_path
    host.process = subprocess.Popen(
        [
            "sh",
            "-c",
            script,
            "sh",
            *TWISTD,
            "-n",
            "--pidfile=",
            "chatroom",
            "--data-dir",
            data_dir,
            "--no-discovery",
            "--room",
            "lobby",
            *args,
        ],
        cwd=REPO,
        env=dict(env, PYTHONPATH=REPO),
        stdout=host.log,
        stderr=subprocess.STDOUT,
        pass_fds=(fd,),
    )
    return host


class InheritedSocketTests(SynchronousTestCase):
    """--tls-endpoint systemd:... serves TLS on a socket from the parent,
    and the port stays open across a crash and restart."""

    def test_inherited_socket_held_across_restart(self):
        data_dir = os.path.abspath(self.mktemp())
        os.makedirs(data_dir)
        key = load_or_create(data_paths(data_dir)[0]).public_key
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        args = ["--tls-endpoint", "systemd:domain=INET:name=tls"]

        first = _inherit(listener, args, data_dir, os.path.join(data_dir, "1.log"))
        self.addCleanup(first.stop)
        self.assertEqual(first.port(), port)
        client = _TLSClient(socket.create_connection(("127.0.0.1", port), 30), key)
        client.register("alice")
        client.close()

        first.process.send_signal(signal.SIGKILL)
        first.process.wait(30)
        # Nobody serves the port now, yet a client can connect: the socket
        # is held (by systemd; here by this test), not closed with the host.
        waiting = socket.create_connection(("127.0.0.1", port), 30)
        second = _inherit(listener, args, data_dir, os.path.join(data_dir, "2.log"))
        self.addCleanup(second.stop)
        # The connection made while the host was down is served by the new one.
        client = _TLSClient(waiting, key)
        client.register("bob")
        client.close()
        self.assertEqual(second.port(), port)


class DualStackSocketTests(SynchronousTestCase):
    """The unit's socket is IPv6 with IPv4 mapped in (domain INET6); IPv4
    clients on it arrive as ::ffff:a.b.c.d and are served."""

    def test_ipv4_client_on_ipv6_socket(self):
        data_dir = os.path.abspath(self.mktemp())
        os.makedirs(data_dir)
        key = load_or_create(data_paths(data_dir)[0]).public_key
        listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # Only loopback: the IPv4-mapped form of 127.0.0.1.
        listener.bind(("::ffff:127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        host = _inherit(
            listener,
            ["--tls-endpoint", "systemd:domain=INET6:name=tls"],
            data_dir,
            os.path.join(data_dir, "host.log"),
        )
        self.addCleanup(host.stop)
        # The kernel queues the connection until the host accepts it.
        client = _TLSClient(socket.create_connection(("127.0.0.1", port), 30), key)
        client.register("alice")
        client.close()


class _TLSClient:
    """TLS over an already connected socket, pinned to the room key."""

    def __init__(self, raw, key):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        raw.settimeout(30)
        self.sock = context.wrap_socket(raw)
        der = self.sock.getpeercert(binary_form=True)
        if public_key_of(x509.load_der_x509_certificate(der)) != key:
            raise AssertionError("the server's key is not the room key")

    def register(self, nick):
        self.sock.sendall(
            format_line("NICK", nick) + format_line("USER", nick, "0", "*", nick)
        )
        data = b""
        while b" 001 " not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("closed before the welcome: %r" % (data,))
            data += chunk

    def close(self):
        self.sock.close()
