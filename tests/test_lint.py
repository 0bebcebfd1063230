"""The code passes ruff (checks and format), and the pure core passes
mypy --strict."""

import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Every tree of Python the project keeps.
TREES = ("chatroom", "tests", "twisted", "bench", "scripts", "contrib")


def run_tool(case, module, *args, fix=""):
    """Run C{python -m module args} from the repository root; fail C{case}
    with its output (and C{fix}, what to run) when it finds something, skip
    when the tool is not installed."""
    try:
        __import__(module)
    except ImportError:
        raise case.skipTest("%s is not installed: pip install '.[test]'" % (module,))
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    case.assertEqual(result.returncode, 0, fix + result.stdout + result.stderr)


class LintTests(SynchronousTestCase):
    """Unused imports, undefined names, mutable defaults, loop closures."""

    def test_ruff(self):
        run_tool(self, "ruff", "check", "--no-cache", *TREES)


class FormatTests(SynchronousTestCase):
    """The whole tree is formatted one way: C{ruff format}, as Twisted
    formats itself (Black's style), with the line length of
    pyproject.toml."""

    def test_ruff_format(self):
        run_tool(
            self,
            "ruff",
            "format",
            "--check",
            "--no-cache",
            *TREES,
            fix="Run: ruff format %s\n" % (" ".join(TREES),),
        )


class TypingTests(SynchronousTestCase):
    """The pure core is fully typed; the edge is not (yet)."""

    def test_core_strict(self):
        run_tool(self, "mypy", "--strict", "--no-incremental", "chatroom/core")
