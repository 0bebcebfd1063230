"""The one error every parser of the pure core raises for malformed input."""

from __future__ import annotations


class ParseError(ValueError):
    """Input (an IRC line, a datagram, a field of one) is malformed and
    was not used.

    @ivar reason: a short stable token (C{"truncated"}, C{"bad-signature"},
        C{"malformed"} ...) suitable as a counter name; the message is a
        sentence for people.
    """

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason
