"""The twistd plugin: ``twistd chatroom`` hosts chat rooms."""

from twisted.application.service import ServiceMaker

chatroom = ServiceMaker(
    "chatroom",
    "chatroom.tap",
    "Host IRC-compatible chat rooms over TLS, announced on the local network.",
    "chatroom",
)
