"""The code passes ruff, and the pure core passes mypy --strict."""

import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class LintTests(SynchronousTestCase):
    """Unused imports, undefined names, mutable defaults, loop closures."""

    def test_ruff(self):
        try:
            import ruff  # noqa: F401
        except ImportError:
            raise self.skipTest("ruff is not installed: pip install '.[test]'")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "ruff",
                "check",
                "--no-cache",
                "chatroom",
                "tests",
                "twisted",
                "bench",
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=300,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


class FormatTests(SynchronousTestCase):
    """The whole tree is formatted one way: C{ruff format}, as Twisted
    formats itself (Black's style), with the line length of
    pyproject.toml."""

    def test_ruff_format(self):
        try:
            import ruff  # noqa: F401
        except ImportError:
            raise self.skipTest("ruff is not installed: pip install '.[test]'")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "ruff",
                "format",
                "--check",
                "--no-cache",
                "chatroom",
                "tests",
                "twisted",
                "bench",
                "scripts",
                "contrib",
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=300,
        )
        self.assertEqual(
            result.returncode,
            0,
            "Run: ruff format chatroom tests twisted bench scripts contrib\n"
            + result.stdout
            + result.stderr,
        )


class TypingTests(SynchronousTestCase):
    """The pure core is fully typed; the edge is not (yet)."""

    def test_core_strict(self):
        try:
            import mypy  # noqa: F401
        except ImportError:
            raise self.skipTest("mypy is not installed: pip install '.[test]'")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "mypy",
                "--strict",
                "--no-incremental",
                "chatroom/core",
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=600,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
