"""The built wheel installs into a fresh virtualenv and twistd finds the plugin."""

import os
import subprocess
import sys
import venv

from twisted.trial.unittest import SynchronousTestCase

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, **kwargs):
    """Run a command, failing with its output when it fails."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    if result.returncode:
        raise AssertionError(
            "%s failed:\n%s\n%s" % (args, result.stdout, result.stderr)
        )
    return result


class WheelTests(SynchronousTestCase):
    """What a user gets from C{pip install}."""

    def test_wheel_in_fresh_venv(self):
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        run(sys.executable, "-m", "build", "--wheel", "--outdir", work, REPO)
        (wheel,) = [name for name in os.listdir(work) if name.endswith(".whl")]
        listing = run(
            sys.executable, "-m", "zipfile", "-l", os.path.join(work, wheel)
        ).stdout
        self.assertIn("twisted/plugins/chatroom_plugin.py", listing)
        self.assertIn("chatroom/schemas/history-v1.sql", listing)
        self.assertNotIn("twisted/__init__.py", listing)
        self.assertNotIn("twisted/plugins/__init__.py", listing)
        self.assertNotIn("dropin.cache", listing)

        env_dir = os.path.join(work, "venv")
        venv.create(env_dir, with_pip=True)
        bin_dir = os.path.join(env_dir, "bin")
        # Without PYTHONPATH (trial -j sets it), pip would find Twisted on
        # the outer path, skip installing it, and leave no twistd script.
        clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        run(
            os.path.join(bin_dir, "pip"),
            "install",
            "--quiet",
            os.path.join(work, wheel),
            env=clean,
        )
        # Run from an empty directory so the checkout is not on the path.
        # The plugin list must also name every package of ours: a missing
        # one fails here as an ImportError.
        self.assertIn("chatroom/commands/__init__.py", listing)
        result = run(
            os.path.join(bin_dir, "twistd"),
            "chatroom",
            "--help",
            cwd=work,
            env={"PATH": bin_dir + os.pathsep + os.environ["PATH"]},
        )
        self.assertIn("--room", result.stdout)
        self.assertIn("--data-dir", result.stdout)
        self.assertTrue(os.path.exists(os.path.join(bin_dir, "chatroom")))
