"""The code passes ruff with the project's small, high-value rule set."""

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
            [sys.executable, "-m", "ruff", "check", "--no-cache", "chatroom", "tests",
             "twisted", "bench"], capture_output=True, text=True, cwd=REPO,
            timeout=300)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
