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
            # SIGHUP reloads, never stops the host (tests/test_hangup.py).
            "ExecReload=/bin/kill -HUP $MAINPID",
        ):
            self.assertIn("\n" + setting + "\n", service)
        # The service asks for the socket by the name the socket unit gives it.
        name = re.search(r"^FileDescriptorName=(\S+)$", socket_unit, re.M).group(1)
        self.assertIn("--tls-endpoint systemd:domain=INET6:name=%s" % (name,), service)
        self.assertIn("--data-dir /var/lib/chatroom", service)

    def test_hardening_the_host_survives(self):
        """The unit hardens the service, but not with
        MemoryDenyWriteExecute=yes: the host's TLS context cannot be built
        under it (L{MemoryDenyWriteExecuteTests})."""
        service = _unit("chatroom.service")
        for setting in (
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "PrivateDevices=yes",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectControlGroups=yes",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
            "RestrictNamespaces=yes",
            "LockPersonality=yes",
            "SystemCallArchitectures=native",
        ):
            self.assertIn("\n" + setting + "\n", service)
        self.assertNotRegex(
            service, r"(?m)^\s*MemoryDenyWriteExecute\s*=\s*(yes|true|on|1)\b"
        )

    def test_install_comment_and_documentation(self):
        """The unit's install comment says what docs/operations.rst says (a
        checkout is installed with C{pip install .}; no C{chatroom} is on
        PyPI), and no placeholder URL is left in it."""
        service = _unit("chatroom.service")
        self.assertIn("/opt/chatroom/bin/pip install .\n", service)
        self.assertNotIn("pip install chatroom", service)
        self.assertNotIn("example.invalid", service)
        with open(os.path.join(REPO, "docs", "operations.rst")) as f:
            self.assertIn("/opt/chatroom/bin/pip install .\n", f.read())

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


#: prctl(2) option and flag of the kernel's memory-deny-write-execute
#: (Linux 6.3, include/uapi/linux/prctl.h): what systemd's
#: MemoryDenyWriteExecute=yes sets (with seccomp where the kernel is older).
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1

_UNDER_MDWE = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(%d, %d, 0, 0, 0) != 0:
    print("refused", ctypes.get_errno())
    sys.exit(0)
from chatroom.identity import HostIdentity
from chatroom.tls import server_options
try:
    server_options(HostIdentity.generate())
except MemoryError as e:
    print("MemoryError:", e)
else:
    print("built")
""" % (PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)


class MemoryDenyWriteExecuteTests(SynchronousTestCase):
    """Why the unit leaves out MemoryDenyWriteExecute=yes: under it the host
    cannot build its TLS context, so it stops at start."""

    def test_tls_context_needs_write_execute_memory(self):
        if not sys.platform.startswith("linux"):
            raise self.skipTest("prctl(PR_SET_MDWE) is Linux only")
        result = subprocess.run(
            [sys.executable, "-c", _UNDER_MDWE],
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=REPO),
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        if result.stdout.startswith("refused"):
            raise self.skipTest(
                "this kernel refuses prctl(PR_SET_MDWE) (Linux 6.3 or later "
                "needed; errno %s)" % (result.stdout.split()[1],)
            )
        # The verify callback that takes any client certificate
        # (chatroom.tls.server_options) is a cffi callback, which needs
        # write+execute memory.  If this ever builds, the unit may turn
        # MemoryDenyWriteExecute=yes back on.
        self.assertEqual(
            result.stdout.strip().split(":")[0], "MemoryError", result.stdout
        )
        self.assertIn("write+execute memory for ffi.callback()", result.stdout)


#: Puts fd C{argv[1]} on fd 3 (SD_LISTEN_FDS_START), closes the original,
#: sets LISTEN_PID to its own PID and execs C{argv[2:]}, which keeps that
#: PID.  In Python, not sh: dash's redirections take one-digit fds only,
#: and a busy test process (trial -j2) hands out fds above 9.
_AS_SYSTEMD = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.set_inheritable(3, True)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


def _inherit(listener, args, data_dir, log_path):
    """Start the host with C{listener} as fd 3, LISTEN_FDS=1, LISTEN_PID of
    the host process and LISTEN_FDNAMES=tls, as systemd passes a socket."""
    fd = listener.fileno()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    env.update(LISTEN_FDS="1", LISTEN_FDNAMES="tls")
    host = HostProcess.__new__(HostProcess)
    host.log = open(log_path, "ab")
    host.log_path = log_path
    host.process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _AS_SYSTEMD,
            str(fd),
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
