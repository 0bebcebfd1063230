"""The pure core stays pure: no chatroom.core module imports the network."""

import os
import pkgutil
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

import chatroom.core

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CoreBoundaryTests(SynchronousTestCase):
    """STYLE.md: the core never imports twisted.internet."""

    def test_core_imports_no_twisted_internet(self):
        modules = [
            "chatroom.core." + info.name
            for info in pkgutil.iter_modules(chatroom.core.__path__)
        ]
        self.assertIn("chatroom.core.room", modules)
        code = (
            "import importlib, sys\n"
            "for name in sys.argv[1:]:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules"
            " if m.startswith('twisted.internet')))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code, *modules],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=REPO),
            timeout=120,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), "[]")


class ClientAPITests(SynchronousTestCase):
    """The documented import path of the client API works."""

    def test_exports(self):
        import chatroom.client
        from chatroom.client import errors, session

        for name in chatroom.client.__all__:
            self.assertIs(
                getattr(chatroom.client, name),
                getattr(session, name, None) or getattr(errors, name),
            )
        self.assertRaises(AttributeError, getattr, chatroom.client, "Nope")
