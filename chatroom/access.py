# -*- test-case-name: tests.test_private_rooms -*-
"""Private rooms: who may join them, from the command line and a file.

A host's private rooms admit a client that gives the room password (the
channel key of C{JOIN}, or C{PASS}) or whose client key (its TLS client
certificate) is on the allow-list.  The allow-list is the fingerprints
given with C{--allow-key} plus those in C{--allow-file}, which the host
reads again on C{SIGHUP}, so an operator can let someone in (or out)
without a restart.
"""

from __future__ import annotations

import re

from chatroom.core.room import RoomAccess
from chatroom.errors import ChatroomError

_FINGERPRINT = re.compile(r"[0-9a-f]{64}\Z")


class AccessFileError(ChatroomError):
    """The allow-list file cannot be read or has a line that is not a key
    fingerprint."""


def parse_fingerprint(text: str) -> str:
    """A client key fingerprint as C{chatroom whoami} prints it: 64 hex
    digits (colons and case do not matter).

    @raise ValueError: with a sentence, when C{text} is not one.
    """
    cleaned = text.strip().replace(":", "").lower()
    if not _FINGERPRINT.match(cleaned):
        raise ValueError(
            "%r is not a client key fingerprint (64 hex digits, "
            "as chatroom whoami prints it)" % (text,)
        )
    return cleaned


def read_allow_file(path: str) -> frozenset[str]:
    """The fingerprints in the file at C{path}: one per line; blank lines
    and lines starting with C{#} are ignored.

    @raise AccessFileError: the file cannot be read, or a line is not a
        fingerprint (the message names the line).
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise AccessFileError(
            "Cannot read the allow-list %s: %s."
            % (path, getattr(e, "strerror", None) or e)
        ) from None
    allowed = set()
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            allowed.add(parse_fingerprint(line))
        except ValueError as e:
            raise AccessFileError(
                "Line %d of the allow-list %s: %s." % (number, path, e)
            ) from None
    return frozenset(allowed)


class PrivateRooms:
    """The access rule of a host's private rooms, kept up to date.

    @param password: the room password, C{""} for none.
    @param keys: fingerprints given on the command line.
    @param path: the allow-list file, or C{None}.
    @raise AccessFileError: the file cannot be used at start.
    """

    def __init__(self, password: str, keys: frozenset[str], path: str | None) -> None:
        self.password = password
        self.keys = keys
        self.path = path
        self.access = self._read()

    def _read(self) -> RoomAccess:
        allowed = self.keys
        if self.path is not None:
            allowed = allowed | read_allow_file(self.path)
        return RoomAccess(self.password, allowed)

    def reload(self) -> RoomAccess:
        """Read the allow-list file again; keep the old rule if it cannot
        be used.

        @raise AccessFileError: after keeping the old rule, so the caller
            can log the sentence.
        """
        self.access = self._read()
        return self.access
