#!/usr/bin/env python3
"""What a Python process must hold before chatroom's own code runs.

The benchmark's figure "server RSS before first client" (``bench/run.py``,
scenario ``idle_1000``) is the resident memory of ``twistd chatroom`` with
its room open and no member.  This script reads the resident memory
(``/proc/self/status``: ``VmRSS``, ``RssAnon``, ``RssFile``, KiB) of fresh
interpreters that import less and less of what that process needs, so the
figure can be split into what chatroom can change and what it cannot:

1. the bare interpreter;
2. ``twisted.internet.reactor`` (the epoll reactor), which already loads
   pyOpenSSL and the OpenSSL in the ``cryptography`` wheel
   (``twisted.internet.tcp`` imports Twisted's TLS) and, through
   ``asyncio``, the standard library's ``ssl`` and the system's OpenSSL;
3. that and ``twistd`` (``twisted.scripts.twistd``), as the service runs;
4. that and chatroom's host modules (``chatroom.tap``, ``chatroom.host``,
   ``chatroom.service``, ``chatroom.history``), nothing started.

Usage: ``python bench/startfloor.py`` with the Python that runs the host.
"""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STEPS = [
    ("bare interpreter", ""),
    ("twisted.internet.reactor", "from twisted.internet import reactor"),
    (
        "+ twistd",
        "from twisted.internet import reactor; import twisted.scripts.twistd",
    ),
    (
        "+ chatroom's host modules",
        "from twisted.internet import reactor; import twisted.scripts.twistd; "
        "import chatroom.tap, chatroom.host, chatroom.service, chatroom.history",
    ),
]

PROBE = """
import sys
%s
fields = {}
with open("/proc/self/status") as f:
    for row in f:
        key, _, value = row.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0])
print(fields["VmRSS"], fields["RssAnon"], fields["RssFile"], len(sys.modules))
"""


def main():
    print("%-28s %8s %8s %8s %8s" % ("imported", "RSS KiB", "anon", "file", "modules"))
    for title, code in STEPS:
        out = subprocess.run(
            [sys.executable, "-c", PROBE % (code,)],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        print("%-28s %8s %8s %8s %8s" % (title, *out))


if __name__ == "__main__":
    main()
