"""The chatroom client: the Python API that the C{chatroom} console script uses.

    from chatroom.client import RoomFinder, RoomSession

L{RoomFinder} finds rooms on the network; L{RoomSession} joins one over
pinned TLS, reconnects and follows the host when it moves, and reports each
event once, in the host's order.  See C{docs/client.rst}.

The names are loaded on first use, so that importing a pure submodule
(C{chatroom.client.reconnect}) does not pull in the network code.
"""

import importlib

_EXPORTS = {
    "RoomEvent": "chatroom.client.session",
    "RoomFinder": "chatroom.client.session",
    "RoomSession": "chatroom.client.session",
    "AmbiguousRoom": "chatroom.client.errors",
    "ClientError": "chatroom.client.errors",
    "HostUnreachable": "chatroom.client.errors",
    "KeyMismatch": "chatroom.client.errors",
    "NickInUse": "chatroom.client.errors",
    "NoSuchRoom": "chatroom.client.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    return getattr(importlib.import_module(_EXPORTS[name]), name)
