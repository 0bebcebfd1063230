"""Linux network namespaces that a test makes for itself and removes after.

The multi-host tests (discovery over routed hops, a client on a link that
goes silent, fan-out over a lossy link) each build a few namespaces joined
by veth pairs, start Python programs inside them and tear everything down
in a cleanup.  This is that shared part; the topology and the programs are
each test's own.  Nothing here reaches the machine's real interfaces: the
namespaces have only loopback and the veth pairs the test adds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial.unittest import SkipTest

#: The repository root: programs run inside a namespace import chatroom
#: and the test helpers from here.
ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    """Run a command (at most 30 s); its standard output.

    @raise RuntimeError: it failed, with its standard error.
    """
    result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if result.returncode:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


class NamespacesMixin:
    """For a C{SynchronousTestCase}: namespaces, veth links, programs in
    them, and a cleanup that stops every program and deletes every
    namespace, whatever happened.

    @ivar ns: the namespace names, by the short names the test gave.
    @ivar tmp: a temporary directory, removed with the namespaces.
    """

    def make_namespaces(
        self, prefix: str, names: list[str], tools: dict[str, str]
    ) -> None:
        """Skip unless this machine can (Linux, root, the C{tools}, given as
        command to Debian package); then make one namespace per name,
        called C{prefix} + the process id + the name, so runs in parallel
        never meet."""
        if not sys.platform.startswith("linux"):
            raise SkipTest("Network namespaces exist only on Linux.")
        if os.geteuid() != 0:
            raise SkipTest("Creating network namespaces needs root.")
        for tool, package in {"ip": "iproute2", **tools}.items():
            if shutil.which(tool) is None:
                raise SkipTest(
                    f"'{tool}' is missing; install the Debian package {package}."
                )
        tag = f"{prefix}{os.getpid() % 100000}"
        self.ns = {name: tag + name for name in names}
        self.tmp = Path(tempfile.mkdtemp(prefix="chatroom-netns-"))
        self.processes: list[subprocess.Popen] = []
        self.ns_made: list[str] = []
        self.addCleanup(self.clean_up)  # type: ignore[attr-defined]
        for number, name in enumerate(names):
            try:
                run("ip", "netns", "add", self.ns[name])
            except RuntimeError as e:
                if number:
                    raise
                raise SkipTest(f"Cannot create a network namespace here: {e}") from None
            self.ns_made.append(self.ns[name])
            self.ns_run(name, "ip", "link", "set", "lo", "up")

    def link(self, left: str, left_if: str, right: str, right_if: str) -> None:
        """A veth pair from namespace C{left} to C{right}."""
        run(
            "ip",
            "link",
            "add",
            left_if,
            "netns",
            self.ns[left],
            "type",
            "veth",
            "peer",
            "name",
            right_if,
            "netns",
            self.ns[right],
        )

    def address(self, name: str, interface: str, address: str) -> None:
        """Give C{interface} in namespace C{name} an address (C{a.b.c.d/n})
        and bring it up."""
        self.ns_run(name, "ip", "addr", "add", address, "dev", interface)
        self.ns_run(name, "ip", "link", "set", interface, "up")

    def ns_run(self, name: str, *args: str) -> str:
        """Run a command inside namespace C{name}; its standard output."""
        return run("ip", "netns", "exec", self.ns[name], *args)

    def python_in(
        self, name: str, script: str, *args: str, text: bool = False
    ) -> subprocess.Popen:
        """Start C{script} with this Python inside namespace C{name}, its
        standard streams piped; it is stopped by the cleanup."""
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[name], sys.executable, "-c", script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=text,
            env=env,
            cwd=str(ROOT),
        )
        self.processes.append(process)
        return process

    def clean_up(self) -> None:
        """Stop every program started and delete every namespace made."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
        for ns in self.ns_made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
