"""docs/operations.rst lists every counter the host moves."""

import os
import re

from twisted.trial.unittest import SynchronousTestCase

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: How the host moves a counter: C{host.count("name")}, a line guard's
#: C{self._violation("name", ...)}, which counts it (chatroom/lineguard.py),
#: or the service's C{self._add("name", amount)} (chatroom/service.py).
_COUNTER = re.compile(r"""\b(?:count|_violation|_add)\(\s*["']([a-z0-9-]+)["']""")


def _counters():
    """Every counter name moved somewhere under chatroom/."""
    names = set()
    for directory, _, files in os.walk(os.path.join(REPO, "chatroom")):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(directory, name), encoding="utf-8") as f:
                    names.update(_COUNTER.findall(f.read()))
    return names


class CountersListedTests(SynchronousTestCase):
    """The "Counters" section of docs/operations.rst names every counter,
    each with a line saying what one count means."""

    def test_every_counter_listed(self):
        names = _counters()
        # The pattern finds the counters (guards against it finding none).
        self.assertIn("recvq-exceeded", names)
        self.assertIn("kills", names)
        with open(os.path.join(REPO, "docs", "operations.rst"), encoding="utf-8") as f:
            listed = set(re.findall(r"^\* ``([a-z0-9-]+)``: \S", f.read(), re.M))
        self.assertEqual(sorted(names - listed), [])


class Kill9LoopUsageTests(SynchronousTestCase):
    """scripts/kill9_loop.py is run with the venv's Python, from the
    repository root: its usage and docs/operations.rst say so (the system
    python3 has no Twisted)."""

    def test_run_with_the_venv_python(self):
        command = ".venv-test/bin/python scripts/kill9_loop.py"
        for path in ("scripts/kill9_loop.py", "docs/operations.rst"):
            with open(os.path.join(REPO, path), encoding="utf-8") as f:
                text = f.read()
            self.assertIn(command, text, path)
            self.assertIn("repository root", text, path)
            self.assertNotRegex(text, r"(?m)^\s*python3? scripts/kill9_loop\.py", path)
