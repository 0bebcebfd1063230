# -*- test-case-name: tests.test_ircserver.LabeledResponseTests -*-
"""The answer to one IRC command: its lines, its label, its batch, its echo.

Every command a client sends gets one L{Reply} (Ergo's C{ResponseBuffer}).
Handlers add numerics and other lines to it; room events the command caused
are handed to the host with it, and the host gives the reply the sender's
own copy of each event (its echo) once the event is stored.  When the
handler has returned and every event it caused is stored, the reply is
written: with IRCv3 C{labeled-response}, as an C{ACK} (nothing to say), as
one labelled line, or as one labelled C{BATCH}; without a label, as the
plain lines.  So the label, the batch and the echo are handled here and
nowhere else.
"""

from __future__ import annotations

from typing import Any, Callable

from chatroom.core.ircline import add_tags, format_line

#: The longest C{label} value a client may send, in bytes (IRCv3
#: labeled-response: "the label ... MUST NOT exceed 64 bytes").
MAX_LABEL_BYTES = 64


class Reply:
    """The lines answering one command, written once the command is done.

    One is made per command, so it is kept small: what most commands need
    (no label, one event, nothing to say) costs a counter and a queue entry.

    @param connection: the L{chatroom.ircserver.IRCConnection} that sent the
        command; the reply is written to it.
    @param label: the command's C{label} tag, when the client negotiated
        C{labeled-response}; C{None} otherwise.
    """

    __slots__ = (
        "connection",
        "label",
        "_lines",
        "_target",
        "_waiting",
        "_after",
        "_open",
        "_queue",
        "_then",
        "_written",
    )

    def __init__(self, connection: Any, label: str | None) -> None:
        self.connection = connection
        self.label = label
        # Lines, and in its place each event the command caused (its
        # L{Delivery}, whose C{lines} receive its echo and follow-ups), so
        # that the reply keeps the order in which the command did things.
        self._lines: list[Any] = []
        self._target = self._lines
        #: Events caused and not yet stored.
        self._waiting = 0
        self._after: list[tuple[Any, Callable[[], None]]] | None = None
        self._open = True
        #: Output that must follow this reply (L{write_after}).
        self._then: list[bytes] | None = None
        self._written = False
        # Replies go out in the order of the commands: one that is done
        # waits for the replies before it (a PONG must not overtake the
        # names of a JOIN sent just before the PING).
        self._queue = connection.replies
        self._queue.append(self)

    def send(
        self,
        command: str,
        *params: str,
        prefix: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        """Add one line, from the server unless C{prefix} says otherwise."""
        self._target.append(
            format_line(
                command,
                *params,
                prefix=prefix or self.connection.host.server_name,
                tags=tags,
            )
        )

    def numeric(self, code: str, *params: str) -> None:
        """Add a numeric reply addressed to the client (its nick, or C{*})."""
        self.send(code, self.connection.nick or "*", *params)

    def extend(self, lines: list[bytes]) -> None:
        """Add lines that are already formatted (a history batch)."""
        self._target.extend(lines)

    # Events the command caused

    def expect(self, delivery: Any) -> None:
        """C{delivery} was caused by this command: wait until it is stored."""
        delivery.reply = self
        self._waiting += 1
        self._lines.append(delivery)

    def after(self, delivery: Any, follow_up: Callable[[], None]) -> None:
        """Run C{follow_up} once C{delivery} is stored and echoed (the topic
        and names after a C{JOIN})."""
        if self._after is None:
            self._after = []
        self._after.append((delivery, follow_up))

    @property
    def holds_echo(self) -> bool:
        """Whether the client's own copies of the events this command caused
        belong in the reply (a labelled reply is written as one piece), or
        go out at their place in the room's order."""
        return self.label is not None

    def echo(self, line: bytes, delivery: Any) -> None:
        """The client's own copy of C{delivery}, an event this labelled
        command caused; it takes the event's place in the reply."""
        _lines_of(delivery).append(line)

    def write_after(self, data: bytes) -> None:
        """Write C{data} (room events for this client) right after this
        reply: at once if it is written, otherwise as soon as it is.  The
        host sends here what follows an event whose echo this reply holds,
        so that the client sees the room's order."""
        if self._written:
            self.connection.write(data)
        elif self._then is None:
            self._then = [data]
        else:
            self._then.append(data)

    def committed(self, delivery: Any, stored: bool = True) -> None:
        """The host stored (or, with C{stored=False}, could not store)
        C{delivery}; run its follow-ups and write the reply if it is done."""
        self._waiting -= 1
        if not stored or self._after is not None:
            self._target = _lines_of(delivery)
            try:
                if not stored:
                    self.send(
                        "FAIL",
                        delivery.event.command,
                        "INTERNAL_ERROR",
                        "Could not store the event; it was not delivered",
                    )
                self._run_follow_ups(delivery, stored)
            finally:
                self._target = self._lines
        if not self._open and not self._waiting:
            self._write_if_done()

    def _run_follow_ups(self, delivery: Any, stored: bool) -> None:
        after = self._after
        if after is None:
            return
        mine = [item for item in after if item[0] is delivery]
        for item in mine:
            after.remove(item)
            if stored:
                item[1]()

    def close(self) -> None:
        """The handler returned: write the reply now, or once every event
        it caused is stored."""
        self._open = False
        self._write_if_done()

    def _write_if_done(self) -> None:
        if self._open or self._waiting or self._queue[0] is not self:
            return
        self._queue.popleft()
        self._written = True
        self._write()
        if self._then is not None:
            then, self._then = self._then, None
            self.connection.write(b"".join(then))
        if self._queue:
            self._queue[0]._write_if_done()

    def _write(self) -> None:
        lines: list[bytes] = []
        for item in self._lines:
            if type(item) is bytes:
                lines.append(item)
            elif item.lines:
                lines.extend(item.lines)
        self._lines = []
        self._target = self._lines
        connection = self.connection
        if self.label is None:
            if lines:
                connection.write(b"".join(lines))
            return
        tag = {"label": self.label}
        server = connection.host.server_name
        if not lines:
            connection.write(format_line("ACK", prefix=server, tags=tag))
        elif len(lines) == 1:
            connection.write(add_tags(lines[0], tag))
        elif "batch" not in connection.caps:
            connection.write(b"".join(lines))
        else:
            ref = connection.new_batch_id()
            connection.write(
                add_tags(
                    format_line("BATCH", "+" + ref, "labeled-response", prefix=server),
                    tag,
                )
                + b"".join(
                    line if _in_batch(line) else add_tags(line, {"batch": ref})
                    for line in lines
                )
                + format_line("BATCH", "-" + ref, prefix=server)
            )


def _lines_of(delivery: Any) -> list[bytes]:
    """The lines a reply holds in C{delivery}'s place, made on first use."""
    lines: list[bytes] | None = delivery.lines
    if lines is None:
        lines = delivery.lines = []
    return lines


def _in_batch(line: bytes) -> bool:
    """Whether C{line} already belongs to a (nested) batch: a line carries
    each tag key at most once, so it keeps its inner batch."""
    if not line.startswith(b"@"):
        return False
    tags = line[1 : line.index(b" ")]
    return any(tag.split(b"=", 1)[0] == b"batch" for tag in tags.split(b";"))
