#!/usr/bin/env python3
"""Run the chatroom benchmark: the same IRC workload against ngircd, InspIRCd and chatroom.

One command, from the repository root, with the Python that has the project's
dependencies (it is also the Python the chatroom server is started with)::

    python3 bench/run.py

It installs what it needs on Debian 12 (gcc, make, libssl-dev, ngircd,
inspircd, openssl), builds the C load generator (bench/loadgen.c) into
bench/build/, and then, for every scenario and every server, starts a fresh
server on 127.0.0.1 pinned to CPU 0, drives it with the generator pinned to
CPU 1, and stops it again.  It prints a table (chatroom's figures also as
ratios to each reference server's from the same run) and writes everything to
bench/results/<time>.json.

Only the Python standard library is used.  See docs/benchmarks.rst.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
BUILD = os.path.join(BENCH, "build")
LOADGEN = os.path.join(BUILD, "loadgen")
RESULTS = os.path.join(BENCH, "results")
CHANNEL_ROOM = "bench"  # chatroom --room bench hosts the IRC channel #bench

# Every scenario is one entry: a new delivery mode (multicast fan-out, later)
# is one more entry with "delivery": "multicast" plus a DELIVERY_MODES entry.
# "window" bounds each full-speed sender's messages that have not yet reached
# every other member, so the run measures the server, not kernel buffers.  At
# 128 ngircd sometimes idled at 80% CPU (Nagle and delayed ACKs pace small
# windows); 256 kept it at 100% in every trial here (docs/benchmarks.rst).
SCENARIOS = [
    {
        "name": "n100_k10_full",
        "title": "N=100, K=10, full speed",
        "clients": 100,
        "senders": 10,
        "rate": 0,
        "window": 256,
        "duration": 10,
        "delivery": "tls",
        "kind": "throughput",
    },
    {
        "name": "n100_k10_rate20",
        "title": "N=100, K=10, 20 msg/s each",
        "clients": 100,
        "senders": 10,
        "rate": 20,
        "window": 128,
        "duration": 10,
        "delivery": "tls",
        "kind": "latency",
    },
    {
        "name": "n500_k5_full",
        "title": "N=500, K=5, full speed",
        "clients": 500,
        "senders": 5,
        "rate": 0,
        "window": 256,
        "duration": 10,
        "delivery": "tls",
        "kind": "throughput",
    },
    {
        "name": "idle_1000",
        "title": "1000 idle registered clients",
        "clients": 1000,
        "senders": 0,
        "rate": 0,
        "window": 1,
        "duration": 5,
        "delivery": "tls",
        "kind": "memory",
    },
    {
        "name": "idle_1000_plain",
        "title": "1000 idle registered plain-text clients",
        "clients": 1000,
        "senders": 0,
        "rate": 0,
        "window": 1,
        "duration": 5,
        "delivery": "plain",
        "kind": "memory",
    },
]

# Multicast fan-out (issue 10) next to the TLS path at the same N: chatroom
# only (ngircd and InspIRCd have no multicast delivery).  N generator clients
# join #bench: K = 2 senders, the reference, and N - 3 more that are, in
# "multicast" delivery, keyed members that took the room key and answered
# START without ever reading the group (loadgen --fanout), in "tls" delivery
# ordinary TLS members.  Two real chatroom clients (`chatroom tail --follow
# --json`) join before the load in both modes and check exactly-once and
# order; the room has N + 2 members.  The host paces each room's datagrams
# (50 at once, then 200 per second: chatroom/core/fanout_sender.py,
# SEND_RATE, from LIMITS.md's 200 accepted per second per room), so what
# multicast members get is bounded by 200 x events per datagram; the rates
# sit far below that bound (20 events/s, the light load for its
# latency target), below it (200 events/s), just under it (1300 events/s; about
# 7 benchmark events fit a datagram, so the bound is about 1400) and at full
# speed (senders bounded only by the TLS members' window).  At full speed the
# host commits events far faster than it may multicast them, and the real
# receivers need about 12 s per second of load to catch up afterwards, so
# those scenarios measure 3 s (RECEIVER_CATCH_UP bounds the wait).
FANOUT_SIZES = (10, 100, 1000)
FANOUT_RATES = (  # (suffix, title, rate per sender, window, measured s)
    ("rate10", "2 senders x 10 msg/s", 10, 256, 10),  # issue 10's light load
    ("rate100", "2 senders x 100 msg/s", 100, 256, 10),
    ("rate650", "2 senders x 650 msg/s", 650, 256, 10),
    ("full", "2 senders at full speed", 0, 256, 3),
)
for _n in FANOUT_SIZES:
    for _suffix, _title, _rate, _window, _duration in FANOUT_RATES:
        for _delivery, _prefix in (("tls", "tls"), ("multicast", "fanout")):
            SCENARIOS.append(
                {
                    "name": f"{_prefix}_n{_n}_{_suffix}",
                    "title": f"N={_n} (+2 real receivers), {_title}, "
                    f"{'multicast members' if _delivery == 'multicast' else 'all TLS'}",
                    "clients": _n,
                    "senders": 2,
                    "rate": _rate,
                    "window": _window,
                    "duration": _duration,
                    "delivery": _delivery,
                    "kind": "fanout",
                    "servers": ("chatroom",),
                    "receivers": 2,
                    "group": "fanout",
                }
            )

# What each delivery mode adds to the server's and the generator's command
# lines.  Servers list the modes they support; others are skipped.  For
# "plain" the generator's port is each server's plain-text listener (its TLS
# listener then gets another free port on 127.0.0.1).
DELIVERY_MODES = {
    "tls": {"chatroom_args": [], "loadgen_args": []},
    "plain": {"chatroom_args": [], "loadgen_args": ["--plain"]},
    # Chatroom.command adds --fanout-port (a free UDP port) and
    # --fanout-group (a random 239.255.x.y); the interface is loopback only.
    "multicast": {
        "chatroom_args": ["--fanout", "--fanout-interface", "127.0.0.1"],
        "loadgen_args": ["--fanout"],
    },
}

# The chatroom options the harness relies on (checked against --help).
CHATROOM_FLAGS = [
    "--data-dir",
    "--room",
    "--interface",
    "--port",
    "--no-discovery",
    "--flood-rate",
    "--max-clients",
    "--listen",
]

# `python -m twisted.scripts.twistd` does nothing with Twisted 26 (the module
# has no __main__ guard), so twistd is started the way its console script does.
TWISTD = [
    "-c",
    "import sys; from twisted.scripts.twistd import run; "
    "sys.argv[0] = 'twistd'; sys.exit(run())",
]

APT_PACKAGES = {  # command or file -> Debian package
    "cc": "gcc",
    "make": "make",
    "openssl": "openssl",
    "ngircd": "ngircd",
    "inspircd": "inspircd",
    "/usr/include/openssl/ssl.h": "libssl-dev",
}


# Real receivers: the project's own client, one process each.
RECEIVER_TIMEOUT = 20  # s to wait for a receiver to print its first event
RECEIVER_CATCH_UP = 90  # s to wait, after the generator, for the backlog


class BenchError(Exception):
    """A problem that stops the benchmark; the message says what to do."""


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- setup
def missing_packages():
    missing = []
    for thing, pkg in APT_PACKAGES.items():
        found = os.path.exists(thing) if thing.startswith("/") else shutil.which(thing)
        if not found:
            missing.append(pkg)
    return missing


def ensure_packages(allow_install):
    """Install the build tools and the C servers with apt-get if any are missing."""
    missing = missing_packages()
    if not missing:
        return
    if not allow_install:
        raise BenchError(
            f"missing Debian packages: {' '.join(missing)}; "
            f"run: apt-get install -y {' '.join(missing)}"
        )
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if sudo and not shutil.which("sudo"):
        raise BenchError(
            f"missing packages {' '.join(missing)} and not root; "
            f"as root run: apt-get install -y {' '.join(missing)}"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Installing ngircd or inspircd would start the system-wide daemon
    # (listening on all interfaces); a policy-rc.d that denies service starts
    # prevents that.
    policy = "/usr/sbin/policy-rc.d"
    made_policy = False
    try:
        if os.geteuid() == 0 and not os.path.exists(policy):
            with open(policy, "w") as f:
                f.write(
                    "#!/bin/sh\n# temporary, from chatroom bench/run.py\nexit 101\n"
                )
            os.chmod(policy, 0o755)
            made_policy = True
        log(f"installing {' '.join(missing)} with apt-get")
        subprocess.run(
            sudo + ["apt-get", "update", "-q"], check=True, env=env, timeout=600
        )
        subprocess.run(
            sudo + ["apt-get", "install", "-y", "-q"] + missing,
            check=True,
            env=env,
            timeout=1200,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        raise BenchError(
            f"apt-get failed ({e}); install by hand: "
            f"apt-get install -y {' '.join(missing)}"
        )
    finally:
        if made_policy:
            os.unlink(policy)
    still = missing_packages()
    if still:
        raise BenchError(f"still missing after apt-get: {' '.join(still)}")


def build_loadgen():
    log("building bench/build/loadgen")
    r = subprocess.run(
        ["make", "-s", "-C", BENCH], capture_output=True, text=True, timeout=300
    )
    if r.returncode != 0:
        raise BenchError(f"building the load generator failed:\n{r.stdout}{r.stderr}")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpu, nofile):
    """preexec_fn for a server: its own CPU core and enough file descriptors."""

    def fn():
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = max(soft, nofile)
        if hard != resource.RLIM_INFINITY and hard < want:
            want = hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    return fn


# ---------------------------------------------------------------- servers
class Server:
    """A server under test: started fresh for every scenario, stopped in finally."""

    name = "?"
    deliveries = ("tls",)

    def __init__(self, opts):
        self.opts = opts
        self.proc = None
        self.logfile = None
        self.tmp = None

    def unavailable(self):
        """None if the server can run here, else a sentence saying why not."""
        return None

    def command(self, port, delivery):
        raise NotImplementedError

    def version(self):
        return None

    def start(self, port, delivery):
        self.tmp = tempfile.mkdtemp(prefix=f"bench-{self.name}-")
        cmd = self.command(port, delivery)
        self.logpath = os.path.join(self.tmp, "server.log")
        self.logfile = open(self.logpath, "wb")
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.cwd(),
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=self.logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=pinned(self.opts.server_cpu, 4096),
        )
        deadline = time.monotonic() + self.opts.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with {self.proc.returncode} at "
                    f"start; log:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise BenchError(
            f"{self.name} did not listen on 127.0.0.1:{port} within "
            f"{self.opts.start_timeout} s; log:\n{self.log_tail()}"
        )

    def cwd(self):
        return self.tmp

    def env(self):
        return None

    def log_tail(self, n=30):
        try:
            with open(self.logpath, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except (OSError, AttributeError):
            return "(no log)"

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            # The server leads its own session; signal the group while the
            # leader is alive (and unreaped), so its id cannot have been reused.
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.proc = None
        if self.logfile:
            self.logfile.close()
            self.logfile = None
        if self.tmp:
            if self.opts.keep_logs:
                log(f"{self.name} files kept in {self.tmp}")
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def make_certificate(directory):
    """A self-signed P-256 certificate and the RFC 7919 ffdhe2048 DH group.

    The same for both C servers, so the TLS work per connection is alike.
    Returns (key, cert, dh) paths.
    """
    key, cert, dh = (
        os.path.join(directory, n) for n in ("key.pem", "cert.pem", "dh.pem")
    )
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "2",
            "-subj",
            "/CN=bench.local",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    # Fixed RFC 7919 group: instant, unlike generating DH parameters.
    subprocess.run(
        [
            "openssl",
            "genpkey",
            "-genparam",
            "-algorithm",
            "DH",
            "-pkeyopt",
            "group:ffdhe2048",
            "-out",
            dh,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return key, cert, dh


def tls_and_plain_ports(port, delivery):
    """(TLS port, plain-text port): the generator's port is the one it speaks."""
    other = free_port()
    return (other, port) if delivery == "plain" else (port, other)


class Ngircd(Server):
    """Debian's ngircd 26 with TLS on 127.0.0.1 and its flood limits lifted."""

    name = "ngircd"
    deliveries = ("tls", "plain")

    def unavailable(self):
        if not shutil.which("ngircd"):
            return "ngircd is not installed (apt-get install ngircd)"
        return None

    def version(self):
        r = subprocess.run(
            ["ngircd", "--version"], capture_output=True, text=True, timeout=30
        )
        return (r.stdout or r.stderr).splitlines()[0] if r.returncode == 0 else None

    def command(self, port, delivery):
        t = self.tmp
        key, cert, dh = make_certificate(t)
        conf = os.path.join(t, "ngircd.conf")
        # ngircd always opens a plain port too; both stay on 127.0.0.1.
        tls_port, plain = tls_and_plain_ports(port, delivery)
        with open(conf, "w") as f:
            f.write(f"""\
# Written by bench/run.py: loopback only, TLS, no throttling.
[Global]
Name = bench.local
Info = chatroom benchmark
AdminInfo1 = benchmark
AdminInfo2 = benchmark
AdminEMail = bench@localhost
Listen = 127.0.0.1
Ports = {plain}
MotdPhrase = benchmark
[Limits]
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 0
MaxNickLength = 31
# 0 disables the penalty (fake lag) that throttles fast clients.
MaxPenaltyTime = 0
PingTimeout = 600
PongTimeout = 600
[Options]
DNS = no
Ident = no
PAM = no
IncludeDir = {t}
[SSL]
CertFile = {cert}
KeyFile = {key}
DHFile = {dh}
Ports = {tls_port}
""")
        return ["ngircd", "-n", "-f", conf]


class Inspircd(Server):
    """Debian's InspIRCd 3 (GnuTLS) on 127.0.0.1, limits lifted like ngircd's."""

    name = "inspircd"
    deliveries = ("tls", "plain")

    def unavailable(self):
        if not shutil.which("inspircd"):
            return "inspircd is not installed (apt-get install inspircd)"
        return None

    def version(self):
        r = subprocess.run(
            ["inspircd", "--version"], capture_output=True, text=True, timeout=30
        )
        out = (r.stdout or r.stderr).strip().splitlines()
        return out[0] if out else None

    def command(self, port, delivery):
        t = self.tmp
        key, cert, dh = make_certificate(t)
        tls_port, plain = tls_and_plain_ports(port, delivery)
        motd = os.path.join(t, "motd.txt")
        with open(motd, "w") as f:
            f.write("benchmark\n")
        conf = os.path.join(t, "inspircd.conf")
        # Limits lifted so that it does not throttle the benchmark: no fake
        # lag and a command rate no client reaches (commandrate is in
        # commands per 1000 s), send queues large enough for a full-speed
        # member (ngircd has no send queue limit to lift), no connection
        # limits per address (every client comes from 127.0.0.1), no DNS or
        # ident lookups (and its resolver pointed at 127.0.0.1, so nothing
        # leaves the machine).  Everything else is the Debian default.
        with open(conf, "w") as f:
            f.write(f"""\
<config format="xml">
<server name="bench.local" description="chatroom benchmark" network="bench">
<admin name="benchmark" nick="benchmark" email="bench@localhost">
<module name="ssl_gnutls">
<sslprofile name="bench" provider="gnutls" certfile="{cert}" keyfile="{key}"
            dhfile="{dh}" hash="sha256">
<bind address="127.0.0.1" port="{tls_port}" type="clients" sslprofile="bench">
<bind address="127.0.0.1" port="{plain}" type="clients">
<connect name="bench" allow="*" maxchans="20" timeout="60" pingfreq="600"
         hardsendq="64M" softsendq="64M" recvq="1M" threshold="1000000"
         commandrate="4000000000" fakelag="no" localmax="100000"
         globalmax="100000" maxconnwarn="no" resolvehostnames="no"
         useident="no" limit="100000">
<performance softlimit="4000" somaxconn="128" clonesonconnect="no"
             quietbursts="yes">
<limits maxnick="31">
<channels users="20" opers="60">
<files motd="{motd}">
<pid file="{t}/inspircd.pid">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default"
     target="{t}/inspircd.log">
<options prefixquit="Quit: " syntaxhints="no" announcets="yes">
<security hideserver="" userstats="Pu" flatlinks="no" maxtargets="20">
<whowas groupsize="10" maxgroups="100000" maxkeep="3d">
<dns server="127.0.0.1" timeout="1">
""")
        # It refuses to run as root without --runasroot; the process lives
        # for one scenario, listens on 127.0.0.1 only and is stopped after it.
        cmd = ["inspircd", "--nofork", "--config", conf]
        if os.geteuid() == 0:
            cmd.append("--runasroot")
        return cmd


class Chatroom(Server):
    """This project's room host, started through its twistd plugin."""

    name = "chatroom"
    deliveries = ("tls", "plain", "multicast")
    root = REPO
    fingerprint_prefix = "chatroom host key fingerprint "

    def fingerprint(self):
        """The host key fingerprint it printed at start (64 hex digits)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with open(self.logpath, "rb") as f:
                    for line in f.read().decode("utf-8", "replace").splitlines():
                        if line.startswith(self.fingerprint_prefix):
                            return line[len(self.fingerprint_prefix) :].split()[0]
            except OSError:
                pass
            time.sleep(0.1)
        raise BenchError(
            f"chatroom printed no key fingerprint; log:\n{self.log_tail()}"
        )

    def env(self):
        env = dict(os.environ)
        env["PYTHONPATH"] = self.root + (
            os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
        )
        return env

    def cwd(self):
        return self.root  # the twistd plugin is found from the repository root

    def unavailable(self):
        try:
            r = subprocess.run(
                [self.opts.python, *TWISTD, "chatroom", "--help"],
                cwd=self.root,
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=120,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"cannot run {self.opts.python}: {e}"
        out = r.stdout + r.stderr
        if r.returncode != 0:
            last = out.strip().splitlines()[-1:] or ["(no output)"]
            return (
                f"`{self.opts.python} ... twistd chatroom --help` failed (is the server written yet, and does --python have the "
                f"project's dependencies?): {last[0]}"
            )
        missing = [flag for flag in CHATROOM_FLAGS if flag not in out]
        if missing:
            return f"twistd chatroom lacks the options {', '.join(missing)}"
        return None

    def version(self):
        r = subprocess.run(
            ["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return f"chatroom at {r.stdout.strip()}" if r.returncode == 0 else "chatroom"

    def command(self, port, delivery):
        data = os.path.join(self.tmp, "data")
        os.mkdir(data, 0o700)
        tls_port, plain = tls_and_plain_ports(port, delivery)
        extra = (
            ["--listen", f"tcp:{plain}:interface=127.0.0.1"]
            if delivery == "plain"
            else []
        )
        if delivery == "multicast":
            # Loopback only (explicit interface in DELIVERY_MODES); a group
            # and port of its own so that nothing else on the machine mixes in.
            import random

            group = f"239.255.{random.randint(100, 199)}.{random.randint(1, 254)}"
            extra += ["--fanout-port", str(free_udp_port()), "--fanout-group", group]
        return [
            self.opts.python,
            *TWISTD,
            "-n",
            "--pidfile=",
            "chatroom",
            "--data-dir",
            data,
            "--room",
            CHANNEL_ROOM,
            "--interface",
            "127.0.0.1",
            "--port",
            str(tls_port),
            "--no-discovery",
            "--flood-rate",
            "0",
            "--max-clients",
            "2000",
            *extra,
            *DELIVERY_MODES[delivery]["chatroom_args"],
        ]


class ChatroomBaseline(Chatroom):
    """chatroom as of an earlier commit (--baseline REV), for before/after
    figures from the same run: the commit is exported with ``git archive``
    into a temporary directory, which is removed at the end."""

    name = "baseline"

    def __init__(self, opts):
        super().__init__(opts)
        self.rev = opts.baseline
        self.root = tempfile.mkdtemp(prefix="bench-baseline-")
        self.export_error = None
        archive = subprocess.run(
            ["git", "-C", REPO, "archive", "--format=tar", self.rev],
            capture_output=True,
            timeout=120,
        )
        if archive.returncode != 0:
            self.export_error = archive.stderr.decode("utf-8", "replace").strip()
            return
        subprocess.run(
            ["tar", "-x", "-C", self.root],
            input=archive.stdout,
            check=True,
            timeout=120,
        )

    def unavailable(self):
        if self.export_error:
            return f"cannot export {self.rev}: {self.export_error}"
        return super().unavailable()

    def version(self):
        r = subprocess.run(
            ["git", "-C", REPO, "rev-parse", "--short", self.rev],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return f"chatroom at {r.stdout.strip() or self.rev}"

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


class ChatroomExperiment(Chatroom):
    """chatroom with an experimental change patched in at start
    (--experiment NAME=VALUE, see bench/experiment_host.py)."""

    name = "experiment"

    def command(self, port, delivery):
        cmd = super().command(port, delivery)
        assert cmd[1 : 1 + len(TWISTD)] == TWISTD
        return [
            cmd[0],
            os.path.join(BENCH, "experiment_host.py"),
            *self.opts.experiment,
            "--",
            *cmd[1 + len(TWISTD) :],
        ]

    def version(self):
        return f"{super().version()} with {' '.join(self.opts.experiment)}"


SERVERS = {
    "ngircd": Ngircd,
    "inspircd": Inspircd,
    "chatroom": Chatroom,
    "baseline": ChatroomBaseline,
    "experiment": ChatroomExperiment,
}
#: The servers chatroom's figures are compared with, in table order: the C
#: servers, and chatroom itself at --baseline REV (after/before).
REFERENCES = ("ngircd", "inspircd", "baseline")


# ---------------------------------------------------------------- receivers
def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Receivers:
    """Real receivers: ``chatroom tail ROOM --follow --json`` processes.

    They join before the load, print one JSON object per event, and are
    checked against what the generator says it sent: every benchmark
    message exactly once, the host's sequence numbers rising, and the same
    order at every receiver.  They run on the generator's CPU and are
    stopped with SIGTERM (the client then exits 0); every wait is bounded.
    """

    def __init__(self, opts, count, tmp):
        self.opts, self.count, self.tmp = opts, count, tmp
        self.procs = []
        self.out = []  # per receiver: [(arrival monotonic ns, line)]
        self.err = []  # per receiver: [(arrival monotonic ns, line)]
        self.threads = []
        self.release_loadgen = lambda: None

    def env(self):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = REPO + (
            os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
        )
        return env

    @staticmethod
    def _reader(stream, sink):
        for raw in iter(stream.readline, b""):
            sink.append(
                (time.monotonic_ns(), raw.decode("utf-8", "replace").rstrip("\n"))
            )
        stream.close()

    def start(self, port, fingerprint):
        import threading

        for i in range(self.count):
            data = os.path.join(self.tmp, f"rx{i}")
            os.mkdir(data, 0o700)
            cmd = [
                self.opts.python,
                "-m",
                "chatroom.client.main",
                "tail",
                CHANNEL_ROOM,
                "--follow",
                "--json",
                "--lines",
                "0",
                "--connect",
                f"127.0.0.1:{port}",
                "--key",
                fingerprint,
                "--discovery-interface",
                "127.0.0.1",
                "--fanout-interface",
                "127.0.0.1",
                "--data-dir",
                data,
                "--nick",
                f"rx{i}",
            ]
            proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=pinned(self.opts.loadgen_cpu, 256),
            )
            self.procs.append(proc)
            out, err = [], []
            self.out.append(out)
            self.err.append(err)
            for stream, sink in ((proc.stdout, out), (proc.stderr, err)):
                t = threading.Thread(
                    target=self._reader, args=(stream, sink), daemon=True
                )
                t.start()
                self.threads.append(t)
        # Ready when each has printed its own JOIN (it is in the room).
        deadline = time.monotonic() + RECEIVER_TIMEOUT
        while time.monotonic() < deadline:
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None:
                    raise BenchError(
                        f"receiver rx{i} exited with {proc.returncode}: "
                        f"{' | '.join(l for _, l in self.err[i][-5:])}"
                    )
            if all(any('"own": true' in l for _, l in out) for out in self.out):
                return
            time.sleep(0.1)
        raise BenchError(
            f"the receivers did not join within {RECEIVER_TIMEOUT} s: "
            + " | ".join(l for err in self.err for _, l in err[-3:])
        )

    def messages(self, i):
        """[(sender, counter, send ns, seq, arrival ns)], all seqs and the
        number of unparsable lines, of receiver i (parsed once, as lines come)."""
        if not hasattr(self, "_parsed"):
            self._parsed = [([], [], [0], [0]) for _ in range(self.count)]
        msgs, seqs, bad, done = self._parsed[i]
        lines = self.out[i]
        end = len(lines)
        for arrival, line in lines[done[0] : end]:
            try:
                ev = json.loads(line)
            except ValueError:
                bad[0] += 1
                continue
            if isinstance(ev.get("seq"), int):
                seqs.append(ev["seq"])
            text = ev.get("text") or ""
            if ev.get("kind") == "message" and text.startswith("BM "):
                parts = text.split()
                try:
                    msgs.append(
                        (
                            int(parts[1]),
                            int(parts[2]),
                            int(parts[3]),
                            ev.get("seq"),
                            arrival,
                        )
                    )
                except (IndexError, ValueError):
                    bad[0] += 1
        done[0] = end
        return msgs, seqs, bad[0]

    def wait_for(self, expected, deadline):
        """Until every receiver has every expected message, or the deadline."""
        while time.monotonic() < deadline:
            if all(
                len(expected) <= len(self.messages(i)[0])
                and expected <= {(m[0], m[1]) for m in self.messages(i)[0]}
                for i in range(self.count)
            ):
                return True
            if any(p.poll() is not None for p in self.procs):
                return False
            time.sleep(0.2)
        return False

    def stop(self):
        codes = []
        for proc in self.procs:
            if proc.poll() is None:
                for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                    try:
                        os.killpg(proc.pid, sig)
                    except ProcessLookupError:
                        pass
                    try:
                        proc.wait(timeout=wait)
                        break
                    except subprocess.TimeoutExpired:
                        continue
            codes.append(proc.returncode)
        for t in self.threads:
            t.join(timeout=5)
        self.procs = []
        return codes

    def report(self, gen, codes, caught_up):
        """Per receiver and summed figures, against the generator's report."""
        sent = gen.get("sent_per_sender") or []
        expected = {(s, c) for s, n in enumerate(sent) for c in range(n)}
        clock = gen.get("clock_ns") or {}
        t0, t1 = clock.get("measure_start") or 0, clock.get("measure_end") or 0
        per, orders = [], []
        for i in range(self.count):
            msgs, seqs, bad = self.messages(i)
            keys = [(m[0], m[1]) for m in msgs]
            got = set(keys)
            last = {}
            sender_order = 0
            for s_, c_ in keys:
                if c_ <= last.get(s_, -1):
                    sender_order += 1
                last[s_] = max(c_, last.get(s_, -1))
            seq_order = sum(1 for a, b in zip(seqs, seqs[1:]) if b <= a)
            lat = [(m[4] - m[2]) / 1e6 for m in msgs if t0 and m[2] >= t0]
            in_window = sum(1 for m in msgs if t0 <= m[4] <= t1)
            arrived = [m[4] for m in msgs if (m[0], m[1]) in expected]
            span = (max(arrived) - min(arrived)) / 1e9 if len(arrived) > 1 else 0
            modes = [
                (round((t - t0) / 1e9, 2) if t0 else None, l)
                for t, l in self.err[i]
                if "multicast" in l.lower() or "TLS" in l
            ]
            orders.append(keys)
            per.append(
                {
                    "messages": len(keys),
                    "lost": len(expected - got),
                    "duplicated": len(keys) - len(got),
                    "unexpected": len(got - expected),
                    "sender_order_errors": sender_order,
                    "seq_order_errors": seq_order,
                    "unparsed_lines": bad,
                    "events_per_s": round(in_window / ((t1 - t0) / 1e9), 1)
                    if t1 > t0
                    else None,
                    "span_events_per_s": round(len(arrived) / span, 1)
                    if span
                    else None,
                    "latency_ms": {
                        "p50": percentile(lat, 0.5),
                        "p99": percentile(lat, 0.99),
                        "max": max(lat) if lat else None,
                    },
                    "last_arrival_after_measure_s": (
                        round((max(arrived) - t1) / 1e9, 3) if arrived and t1 else None
                    ),
                    "status_lines": modes,
                    "exit_code": codes[i] if i < len(codes) else None,
                }
            )
        # Each receiver's modes in order, from its status lines: it starts on
        # TLS, says "Receiving ... by multicast" when it switches, and names
        # TLS again when it falls back.
        modes = []
        for p in per:
            seen = ["tls"]
            for _, line in p["status_lines"]:
                now = (
                    "multicast"
                    if "by multicast" in line
                    else ("tls" if "TLS" in line else None)
                )
                if now and now != seen[-1]:
                    seen.append(now)
            modes.append(">".join(seen))
        mode = ",".join(modes)
        lat_key = lambda k: max(
            (p["latency_ms"][k] for p in per if p["latency_ms"][k] is not None),
            default=None,
        )
        return {
            "count": self.count,
            "mode": mode,
            "caught_up": caught_up,
            "lost": sum(p["lost"] for p in per),
            "duplicated": sum(p["duplicated"] for p in per),
            "order_errors": sum(
                p["sender_order_errors"] + p["seq_order_errors"] for p in per
            ),
            "same_order": all(o == orders[0] for o in orders),
            "events_per_s": min(
                (p["events_per_s"] for p in per if p["events_per_s"] is not None),
                default=None,
            ),
            "span_events_per_s": min(
                (
                    p["span_events_per_s"]
                    for p in per
                    if p["span_events_per_s"] is not None
                ),
                default=None,
            ),
            "latency_ms": {k: lat_key(k) for k in ("p50", "p99", "max")},
            "catch_up_s": max(
                (
                    p["last_arrival_after_measure_s"]
                    for p in per
                    if p["last_arrival_after_measure_s"] is not None
                ),
                default=None,
            ),
            "clean_exit": all(c == 0 for c in codes),
            "each": per,
        }


# ---------------------------------------------------------------- running
def lingering_loadgen(args, timeout, receivers):
    """Start the generator with --linger; return (stdout, stderr, exit code)
    as soon as it has printed its report (None as code if it did not within
    ``timeout`` s).  ``receivers.release_loadgen()`` later closes its stdin,
    so its clients leave, and waits for it."""
    import threading

    proc = subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = [], []
    reported = threading.Event()

    def read_out():
        for line in iter(proc.stdout.readline, ""):
            out.append(line)
            if line == "}\n":  # the report's last line
                reported.set()
        reported.set()

    def read_err():
        for line in iter(proc.stderr.readline, ""):
            err.append(line)

    threads = [threading.Thread(target=f, daemon=True) for f in (read_out, read_err)]
    for t in threads:
        t.start()

    def release():
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        for t in threads:
            t.join(timeout=5)

    receivers.release_loadgen = release
    if not reported.wait(timeout):
        release()
        return "".join(out), "".join(err), None
    return "".join(out), "".join(err), proc.poll() or 0


def run_one(server, scenario, opts):
    """Start the server, drive it with the generator, stop it; return a result."""
    port = free_port()
    duration = opts.duration if opts.duration is not None else scenario["duration"]
    warmup = 0 if scenario["kind"] == "memory" else opts.warmup
    connect_timeout = 120
    timeout = connect_timeout + 2 + warmup + duration + opts.drain + 30
    args = [
        LOADGEN,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--clients",
        str(scenario["clients"]),
        "--senders",
        str(scenario["senders"]),
        "--rate",
        str(scenario["rate"]),
        "--window",
        str(opts.window or scenario["window"]),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--settle",
        "2",
        "--drain",
        str(opts.drain),
        "--connect-timeout",
        str(connect_timeout),
        "--timeout",
        str(timeout),
        "--channel",
        "#" + CHANNEL_ROOM,
        "--payload",
        str(opts.payload),
    ]
    if opts.loadgen_cpu is not None:
        args += ["--cpu", str(opts.loadgen_cpu)]
    if opts.nodelay:
        args.append("--nodelay")
    args += DELIVERY_MODES[scenario["delivery"]]["loadgen_args"]
    receivers = None
    loadavg = os.getloadavg()
    try:
        server.start(port, scenario["delivery"])
        args += ["--server-pid", str(server.proc.pid)]
        log(f"{scenario['name']}: {server.name} on port {port}")
        if scenario.get("receivers"):
            receivers = Receivers(opts, scenario["receivers"], server.tmp)
            receivers.start(port, server.fingerprint())
            # The generator reports, then keeps its clients in the room until
            # the receivers have caught up: no member leaves (which would
            # rotate the key) while the measured events are still on their way.
            linger = RECEIVER_CATCH_UP + 10
            i = args.index("--timeout") + 1
            args[i] = str(timeout + linger)
            args += ["--linger", str(linger)]
            stdout, stderr, code = lingering_loadgen(args, timeout + 30, receivers)
            r = subprocess.CompletedProcess(args, code, stdout, stderr)
            if code is None:
                return {"ok": False, "error": "load generator did not report in time"}
        else:
            try:
                r = subprocess.run(
                    args, capture_output=True, text=True, timeout=timeout + 30
                )
            except subprocess.TimeoutExpired:
                return {"ok": False, "error": "load generator did not stop in time"}
        try:
            result = json.loads(r.stdout)
        except ValueError:
            return {
                "ok": False,
                "error": f"load generator failed ({r.returncode}): "
                f"{r.stderr.strip()[-500:]}",
            }
        if server.proc.poll() is not None:
            result["ok"] = False
            result["error"] = (
                f"{server.name} exited with {server.proc.returncode}; "
                f"log:\n{server.log_tail()}"
            )
        if receivers is not None:
            sent = result.get("sent_per_sender") or []
            expected = {(s, c) for s, n in enumerate(sent) for c in range(n)}
            caught_up = receivers.wait_for(
                expected, time.monotonic() + RECEIVER_CATCH_UP
            )
            if not caught_up:
                log(
                    f"{scenario['name']}: the real receivers did not get every message "
                    f"within {RECEIVER_CATCH_UP} s after the generator stopped"
                )
            result["rx"] = receivers.report(result, receivers.stop(), caught_up)
            receivers.release_loadgen()
        result["loadavg_start"] = [round(x, 2) for x in loadavg]
        result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        events = (result.get("messages_per_s") or 0) * (result.get("duration_s") or 0)
        if events > 0 and (result.get("server_cpu_s") or -1) >= 0:
            result["server_cpu_us_per_event"] = round(
                result["server_cpu_s"] * 1e6 / events, 1
            )
        if not result.get("ok"):
            result["server_log_tail"] = server.log_tail()
        srv = result.get("server") or {}
        base, end = srv.get("baseline"), srv.get("measure_end")
        if base:
            result["server_start_kib"] = base["rss_kb"]
            result["server_start_anon_kib"] = base.get("anon_kb")
        if base and end:
            result["server_peak_kib"] = end["hwm_kb"]
            result["rss_growth_kib"] = end["rss_kb"] - base["rss_kb"]
            result["kib_per_client"] = round(
                (end["rss_kb"] - base["rss_kb"]) / scenario["clients"], 2
            )
        return result
    except BenchError as e:
        return {"ok": False, "error": str(e)}
    finally:
        if receivers is not None:
            receivers.stop()
            receivers.release_loadgen()
        server.stop()


# ---------------------------------------------------------------- report
# (key, label, format, whether the scenario kind shows it)
METRICS = [
    ("deliveries_per_s", "deliveries/s", "{:,.0f}", ("throughput", "latency")),
    ("messages_per_s", "messages/s", "{:,.0f}", ("throughput", "latency")),
    ("latency_ms.p50", "latency p50 ms", "{:.2f}", ("throughput", "latency")),
    ("latency_ms.p99", "latency p99 ms", "{:.2f}", ("throughput", "latency")),
    ("latency_ms.max", "latency max ms", "{:.2f}", ("throughput", "latency")),
    ("lost", "lost", "{:d}", ("throughput", "latency")),
    ("duplicated", "duplicated", "{:d}", ("throughput", "latency")),
    ("out_of_order", "out of order", "{:d}", ("throughput", "latency")),
    (
        "total_order_mismatches",
        "total order mismatches",
        "{:d}",
        ("throughput", "latency"),
    ),
    ("stall_pokes", "stall pokes (PING to unstick)", "{:d}", ("throughput", "latency")),
    ("drain_timed_out", "drain timed out", "{}", ("throughput", "latency")),
    (
        "server_cpu_s_per_1000_deliveries",
        "server CPU ms/1000 deliveries",
        "ms",
        ("throughput", "latency"),
    ),
    ("server_cpu_util", "server CPU use (cores)", "{:.2f}", ("throughput", "latency")),
    (
        "generator_cpu_util",
        "generator CPU use (cores)",
        "{:.2f}",
        ("throughput", "latency", "memory"),
    ),
    (
        "generator_cpu_s_per_1000_deliveries",
        "generator CPU ms/1000 deliveries",
        "ms",
        ("throughput", "latency"),
    ),
    (
        "server_peak_kib",
        "server peak memory KiB",
        "{:,}",
        ("throughput", "latency", "memory"),
    ),
    ("server_start_kib", "server RSS before first client KiB", "{:,}", ("memory",)),
    (
        "server_start_anon_kib",
        "  of which anonymous (not files) KiB",
        "{:,}",
        ("memory",),
    ),
    ("kib_per_client", "server KiB per client", "{:.1f}", ("memory",)),
    ("setup_s", "connect+register+join s", "{:.2f}", ("memory",)),
]
_F = ("fanout",)
METRICS = [
    m
    if m[0]
    not in (
        "messages_per_s",
        "deliveries_per_s",
        "latency_ms.p50",
        "latency_ms.p99",
        "latency_ms.max",
        "lost",
        "duplicated",
        "out_of_order",
        "total_order_mismatches",
        "drain_timed_out",
        "server_cpu_util",
        "generator_cpu_util",
        "server_peak_kib",
    )
    else m[:3] + (m[3] + _F,)
    for m in METRICS
]
METRICS += [
    ("server_cpu_us_per_event", "server CPU us per room event", "{:.1f}", _F),
    ("fanout_multicast_members", "keyed members switched to multicast", "{:d}", _F),
    (
        "fanout_tls_messages_after_switch",
        "  events sent to them over TLS after",
        "{:d}",
        _F,
    ),
    ("rx.mode", "real receivers: delivery mode", "{}", _F),
    ("rx.events_per_s", "real receivers: events/s in interval", "{:,.0f}", _F),
    ("rx.span_events_per_s", "real receivers: events/s first to last", "{:,.0f}", _F),
    ("rx.latency_ms.p50", "real receivers: latency p50 ms", "{:.2f}", _F),
    ("rx.latency_ms.p99", "real receivers: latency p99 ms", "{:.2f}", _F),
    ("rx.catch_up_s", "real receivers: last event after interval s", "{:.2f}", _F),
    ("rx.caught_up", "real receivers: got every message", "{}", _F),
    ("rx.lost", "real receivers: not arrived when stopped", "{:d}", _F),
    ("rx.duplicated", "real receivers: duplicated", "{:d}", _F),
    ("rx.order_errors", "real receivers: out of order", "{:d}", _F),
    ("rx.same_order", "real receivers: same order at each", "{}", _F),
    ("rx.clean_exit", "real receivers: exit 0 on SIGTERM", "{}", _F),
    ("loadavg_start", "load average at start (1, 5, 15 min)", "{}", _F),
]


def get(result, key):
    cur = result
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def fmt(value, spec):
    if value is None:
        return "-"
    if spec == "ms":  # CPU seconds per 1000 deliveries, shown in milliseconds
        return "-" if value < 0 else f"{value * 1000:.3f}"
    try:
        return spec.format(value)
    except (ValueError, TypeError):
        return str(value)


def ratios(results, reference, subject="chatroom"):
    """subject / reference for every numeric metric of every scenario."""
    out = {}
    for scen, by_server in results.items():
        a, b = by_server.get(subject), by_server.get(reference)
        if not (a and b and a.get("ok") and b.get("ok")):
            continue
        out[scen] = {}
        for key, *_ in METRICS:
            x, y = get(a, key), get(b, key)
            if (
                isinstance(x, (int, float))
                and isinstance(y, (int, float))
                and y > 0
                and x >= 0
                and not isinstance(x, bool)
            ):
                out[scen][key] = round(x / y, 3)
    return out


def table(scenarios, servers, results, ratio):
    """The printed table; ratio maps a reference server to ratios() for it."""
    lines = []
    refs = [r for r in ratio if "/" in r or "chatroom" in servers]
    cols = servers + [r if "/" in r else f"chatroom/{r}" for r in refs]
    width = [max(36, *(len(m[1]) + 2 for m in METRICS))] + [
        max(16, len(c) + 2) for c in cols
    ]
    for scen in scenarios:
        lines.append("")
        lines.append(f"{scen['title']}  [{scen['name']}, delivery={scen['delivery']}]")
        head = ["metric"] + cols
        lines.append(
            "".join(
                h.ljust(w) if i == 0 else h.rjust(w)
                for i, (h, w) in enumerate(zip(head, width))
            )
        )
        by_server = results.get(scen["name"], {})
        left_out = [n for n in servers if n not in scen.get("servers", servers)]
        if left_out:
            lines.append(
                f"  not run on {', '.join(left_out)}: "
                + (
                    "no multicast delivery"
                    if scen["delivery"] == "multicast"
                    else "the TLS twin of a multicast scenario, chatroom only"
                )
            )
        for name in servers:
            res = by_server.get(name)
            if res is not None and not res.get("ok"):
                lines.append(f"  {name}: FAILED: {str(res.get('error'))[:200]}")
        for key, label, spec, kinds in METRICS:
            if scen["kind"] not in kinds:
                continue
            row = [label]
            for name in servers:
                res = by_server.get(name)
                row.append(fmt(get(res, key), spec) if res and res.get("ok") else "-")
            for ref in refs:
                r = ratio[ref].get(scen["name"], {}).get(key)
                row.append("-" if r is None else f"{r:.2f}x")
            lines.append(
                "".join(
                    c.ljust(w) if i == 0 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(row, width))
                )
            )
    return "\n".join(lines)


def fanout_summary(scenarios, results):
    """Multicast next to TLS at the same N and rate: chatroom's room
    events/s and host CPU per room event, from one run."""
    rows = []
    for scen in scenarios:
        if scen.get("group") != "fanout" or scen["delivery"] != "multicast":
            continue
        twin = scen["name"].replace("fanout_", "tls_", 1)
        mc = results.get(scen["name"], {}).get("chatroom") or {}
        tl = results.get(twin, {}).get("chatroom") or {}
        rows.append((scen, mc, tl))
    if not rows:
        return ""
    head = (
        "N",
        "load",
        "TLS ev/s",
        "TLS us/ev",
        "mc ev/s",
        "mc us/ev",
        "mc rx ev/s",
        "mc/TLS ev/s",
        "mc/TLS us/ev",
    )
    width = (6, 24, 11, 11, 11, 11, 12, 13, 13)
    out = [
        "",
        "Multicast next to TLS (chatroom only: ngircd and InspIRCd have no "
        "multicast delivery)",
        "ev/s: room events committed per second by the host; us/ev: host CPU per "
        "room event; mc rx ev/s: what the real multicast receivers got per second",
        "".join(h.rjust(w) for h, w in zip(head, width)),
    ]
    for scen, mc, tl in rows:

        def g(res, key):
            return get(res, key) if res.get("ok") else None

        te, tu = g(tl, "messages_per_s"), g(tl, "server_cpu_us_per_event")
        me, mu = g(mc, "messages_per_s"), g(mc, "server_cpu_us_per_event")
        rx = g(mc, "rx.events_per_s")
        load = scen["title"].split(", ")[1]
        cells = (
            str(scen["clients"]),
            load,
            fmt(te, "{:,.0f}"),
            fmt(tu, "{:.1f}"),
            fmt(me, "{:,.0f}"),
            fmt(mu, "{:.1f}"),
            fmt(rx, "{:,.0f}"),
            f"{me / te:.2f}x" if me and te else "-",
            f"{mu / tu:.2f}x" if mu and tu else "-",
        )
        out.append("".join(c.rjust(w) for c, w in zip(cells, width)))
    return "\n".join(out)


def chatroom_openssl(python):
    """The OpenSSL that chatroom's pyOpenSSL uses (often the cryptography
    wheel's own copy, not the system's)."""
    try:
        r = subprocess.run(
            [
                python,
                "-c",
                "from OpenSSL import SSL; print(SSL.OpenSSL_version("
                "SSL.OPENSSL_VERSION).decode())",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() or None


def machine_info():
    info = {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/etc/debian_version") as f:
            info["debian"] = f.read().strip()
    except OSError:
        pass
    r = subprocess.run(["openssl", "version"], capture_output=True, text=True)
    info["openssl"] = r.stdout.strip()
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--servers",
        default="ngircd,inspircd,chatroom",
        help="comma-separated servers to run: ngircd, inspircd, "
        "chatroom (default: all three; a server that cannot "
        "start is skipped with a message saying why)",
    )
    p.add_argument(
        "--scenarios",
        default=",".join(s["name"] for s in SCENARIOS),
        help="comma-separated scenario names, or 'fanout' for the "
        "multicast scenarios and their TLS twins, 'classic' for "
        "the others (default: all)",
    )
    p.add_argument(
        "--baseline",
        metavar="REV",
        help="also run chatroom as of git revision REV (server "
        "'baseline', added to --servers), for before/after "
        "figures from the same run",
    )
    p.add_argument(
        "--experiment",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="also run chatroom with an experimental change patched "
        "in (server 'experiment', see bench/experiment_host.py); "
        "repeat for more",
    )
    p.add_argument(
        "--python",
        default=sys.executable,
        help="Python with the project's dependencies, used to start "
        "chatroom (default: this one)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="measured seconds per scenario (default: per scenario)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="seconds of load before measuring (default: 2)",
    )
    p.add_argument(
        "--drain",
        type=float,
        default=10.0,
        help="max seconds to wait for in-flight messages (default: 10)",
    )
    p.add_argument(
        "--window",
        type=int,
        default=None,
        help="unacknowledged messages per full-speed sender (default: per scenario)",
    )
    p.add_argument(
        "--payload", type=int, default=64, help="message body bytes (default: 64)"
    )
    p.add_argument(
        "--nodelay",
        action="store_true",
        help="set TCP_NODELAY on the generator's sockets (default: off, "
        "like ordinary IRC clients)",
    )
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--loadgen-cpu", type=int, default=1)
    p.add_argument("--start-timeout", type=float, default=60.0)
    p.add_argument(
        "--no-install",
        action="store_true",
        help="do not apt-get missing packages; fail instead",
    )
    p.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep each server's temporary directory and log",
    )
    p.add_argument("--output", help="JSON file (default: bench/results/<time>.json)")
    opts = p.parse_args(argv)

    if (os.cpu_count() or 1) < 2:
        log(
            "warning: one CPU only; server and generator share it, the figures "
            "mean little"
        )
        opts.server_cpu = opts.loadgen_cpu = None
    wanted = [s.strip() for s in opts.servers.split(",") if s.strip()]
    if opts.baseline and "baseline" not in wanted:
        wanted.insert(
            wanted.index("chatroom") if "chatroom" in wanted else len(wanted),
            "baseline",
        )
    if "baseline" in wanted and not opts.baseline:
        p.error("server 'baseline' needs --baseline REV")
    if opts.experiment and "experiment" not in wanted:
        wanted.append("experiment")
    if "experiment" in wanted and not opts.experiment:
        p.error("server 'experiment' needs --experiment NAME=VALUE")
    for name in wanted:
        if name not in SERVERS:
            p.error(f"unknown server {name!r}; choose from {', '.join(SERVERS)}")
    by_name = {s["name"]: s for s in SCENARIOS}
    scenarios = []
    groups = {
        "fanout": [s["name"] for s in SCENARIOS if s.get("group") == "fanout"],
        "classic": [s["name"] for s in SCENARIOS if not s.get("group")],
    }
    names = [
        n
        for name in opts.scenarios.split(",")
        for n in groups.get(name.strip(), [name])
    ]
    for name in names:
        if name.strip() not in by_name:
            p.error(f"unknown scenario {name!r}; choose from {', '.join(by_name)}")
        scenarios.append(by_name[name.strip()])

    try:
        ensure_packages(not opts.no_install)
        build_loadgen()
    except BenchError as e:
        log(str(e))
        return 2

    servers, skipped, skipped_objects = [], {}, []
    for name in wanted:
        srv = SERVERS[name](opts)
        why = srv.unavailable()
        if why:
            log(f"skipping {name}: {why}")
            skipped[name] = why
            skipped_objects.append(srv)
        else:
            servers.append(srv)
    if not servers:
        log("no server to benchmark")
        for srv in skipped_objects:
            if hasattr(srv, "cleanup"):
                srv.cleanup()
        return 2

    started = time.strftime("%Y%m%d-%H%M%S")
    results = {}
    try:
        for scen in scenarios:
            results[scen["name"]] = {}
            for srv in servers:  # interleaved, so drift hits both servers alike
                if scen["delivery"] not in srv.deliveries:
                    continue
                if srv.name not in scen.get("servers", (srv.name,)):
                    continue
                res = run_one(srv, scen, opts)
                results[scen["name"]][srv.name] = res
                if not res.get("ok"):
                    log(f"{scen['name']}: {srv.name} FAILED: {res.get('error')}")
    except KeyboardInterrupt:
        log("interrupted; servers stopped, partial results follow")
    finally:
        for srv in servers:
            srv.stop()
        for srv in servers + [s for s in skipped_objects]:
            if hasattr(srv, "cleanup"):
                srv.cleanup()

    names = [s.name for s in servers]
    ratio = {ref: ratios(results, ref) for ref in REFERENCES if ref in names}
    if "experiment" in names and "chatroom" in names:
        ratio["experiment/chatroom"] = ratios(results, "chatroom", "experiment")
    report = {
        "started": started,
        "command": [sys.executable] + sys.argv,
        "machine": dict(machine_info(), chatroom_openssl=chatroom_openssl(opts.python)),
        "git_commit": subprocess.run(
            ["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "servers": {s.name: s.version() for s in servers},
        "skipped_servers": skipped,
        "options": {k: v for k, v in vars(opts).items()},
        "scenarios": scenarios,
        "delivery_modes": DELIVERY_MODES,
        "results": results,
        "ratios_chatroom_to": ratio,
    }
    out = opts.output or os.path.join(RESULTS, f"{started}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    print(table(scenarios, names, results, ratio))
    print(fanout_summary(scenarios, results))
    for name, why in skipped.items():
        print(f"\n{name} not measured: {why}")
    print(f"\nJSON: {os.path.relpath(out)}")
    ok = all(r.get("ok") for by in results.values() for r in by.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
