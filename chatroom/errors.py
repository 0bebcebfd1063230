"""Errors a user or an operator sees; each message says what to do next."""


class ChatroomError(Exception):
    """Base of every error chatroom reports to a person.

    The string form is a complete sentence meant for the person running the
    program; the docstring of each subclass describes when it happens.
    """


class KeyFileError(ChatroomError):
    """The host key file cannot be used (unsafe permissions, unreadable)."""


class DataDirectoryError(ChatroomError):
    """The data directory cannot be created or written."""


class HistoryStoreError(ChatroomError):
    """The history database cannot be opened or is from a newer version."""


class EndpointError(ChatroomError):
    """A listener description (C{--listen}, C{--tls-endpoint}) cannot be used."""
