"""The chatroom client: the Python API that the C{chatroom} console script uses.

    from chatroom.client import RoomFinder, RoomSession

L{RoomFinder} finds rooms on the network; L{RoomSession} joins one over
pinned TLS, reconnects and follows the host when it moves, and reports each
event once, in the host's order.  See C{docs/client.rst}.
"""

from chatroom.client.errors import (
    AmbiguousRoom,
    ClientError,
    HostUnreachable,
    KeyMismatch,
    NickInUse,
    NoSuchRoom,
)
from chatroom.client.session import RoomEvent, RoomFinder, RoomSession

__all__ = ["AmbiguousRoom", "ClientError", "HostUnreachable", "KeyMismatch",
           "NickInUse", "NoSuchRoom", "RoomEvent", "RoomFinder", "RoomSession"]
