"""chatroom: server-free chat rooms for community wireless networks."""

__version__ = "0.1.0"
