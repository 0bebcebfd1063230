# -*- test-case-name: tests.test_client_ui -*-
"""The terminal chat screen: an input line that survives incoming messages, and slash commands.

Two parts, so that each can be tested on its own:

- L{ChatController} knows the commands (C{/me}, C{/nick}, C{/names},
  C{/topic}, C{/rooms}, C{/help}, C{/quit}) and how events look; it talks
  to a L{~chatroom.client.session.RoomSession} and writes whole lines to a
  sink.
- L{ChatTerminal} is the line editor on Twisted's terminal support
  (C{twisted.conch.insults} over C{twisted.internet.stdio}): history with
  the arrow keys, insert, delete, home, end.  An incoming line is written
  above the input line, which is then redrawn with what the user had typed
  and the cursor where it was, so typing is never garbled.  Ctrl-C and
  Ctrl-D (on an empty line) leave cleanly.
"""

from __future__ import annotations

import datetime
import unicodedata
from typing import Any, Callable

from twisted.conch.recvline import HistoricRecvLine
from twisted.internet import defer
from twisted.python.failure import Failure

from chatroom.client.errors import ClientError
from chatroom.client.session import RoomEvent

HELP = """Commands:
  /me TEXT        an action: * you TEXT
  /nick NAME      change your nick
  /names          who is in the room
  /topic [TEXT]   show or set the topic
  /rooms          the rooms on the network
  /help           this help
  /quit [WHY]     leave (Ctrl-D on an empty line, or Ctrl-C, too)
Anything else is a message to the room; start it with // to send a line
that begins with a slash."""


def format_time(
    time_ms: int | None,
    tz: datetime.tzinfo | None = None,
    now: Callable[[], float] | None = None,
) -> str:
    """C{HH:MM:SS} of an event in local time (or C{tz}); the current time
    when the host did not say."""
    if time_ms is None:
        seconds = now() if now is not None else datetime.datetime.now().timestamp()
    else:
        seconds = time_ms / 1000
    return datetime.datetime.fromtimestamp(seconds, tz).strftime("%H:%M:%S")


def format_event(event: RoomEvent, tz: datetime.tzinfo | None = None) -> str:
    """One line for one room event, irssi-style, with its time."""
    stamp = format_time(event.time_ms, tz)
    who = event.sender
    text = _printable(event.text)
    if event.kind == "message":
        return "%s <%s> %s" % (stamp, who, text)
    if event.kind == "action":
        return "%s * %s %s" % (stamp, who, text)
    if event.kind == "notice":
        return "%s -%s- %s" % (stamp, who, text)
    if event.kind == "join":
        return "%s -!- %s joined" % (stamp, who)
    if event.kind == "part":
        return "%s -!- %s left%s" % (stamp, who, " (%s)" % text if text else "")
    if event.kind == "quit":
        return "%s -!- %s quit%s" % (stamp, who, " (%s)" % text if text else "")
    if event.kind == "topic":
        return "%s -!- %s set the topic: %s" % (stamp, who, text)
    if event.kind == "nick":
        return "%s -!- %s is now %s" % (stamp, who, text)
    return "%s -!- %s %s %s" % (stamp, who, event.kind, text)


def _printable(text: str) -> str:
    """Drop control characters (colour codes, bells, escapes) from a line
    before it reaches the terminal."""
    return "".join(c for c in text if c >= " " and c != "\x7f")


class ChatController:
    """Turns typed lines into session calls and events into lines.

    @param session: a connected L{RoomSession} (or a fake with its methods).
    @param write: called with each line to show.
    @param quit: called (with no argument) when the user wants to leave.
    @param list_rooms: returns lines describing the rooms on the network.
    """

    def __init__(
        self,
        session: Any,
        write: Callable[[str], None],
        quit: Callable[[str], None],
        list_rooms: Callable[[], list[str]] | None = None,
        tz: datetime.tzinfo | None = None,
    ) -> None:
        self.session = session
        self.write = write
        self.quit = quit
        self.list_rooms = list_rooms
        self.tz = tz

    # From the session

    def event_received(self, event: RoomEvent) -> None:
        """Show one room event."""
        self.write(format_event(event, self.tz))

    def status(self, text: str) -> None:
        """Show one line about the connection."""
        self.write("-!- " + text)

    # From the keyboard

    def line_entered(self, line: str) -> defer.Deferred | None:
        """Act on one typed line; returns the Deferred of what it started."""
        if not line.strip():
            return None
        if line.startswith("//"):
            return self._guard(self.session.say(line[1:]))
        if not line.startswith("/"):
            return self._guard(self.session.say(line))
        command, _, rest = line[1:].partition(" ")
        handler = getattr(self, "command_" + command.lower(), None)
        if handler is None:
            self.write("-!- Unknown command /%s; /help lists them." % (command,))
            return None
        return handler(rest.strip())

    def command_me(self, text: str) -> defer.Deferred | None:
        """/me TEXT"""
        if not text:
            self.write("-!- /me needs some text: /me waves.")
            return None
        return self._guard(self.session.action(text))

    def command_nick(self, nick: str) -> defer.Deferred | None:
        """/nick NAME"""
        if not nick or " " in nick:
            self.write("-!- /nick takes one name: /nick alice.")
            return None
        return self._guard(self.session.change_nick(nick))

    def command_names(self, rest: str) -> defer.Deferred | None:
        """/names"""
        d = self._guard(self.session.names())
        d.addCallback(
            lambda names: (
                names is not None
                and self.write(
                    "-!- In %s: %s"
                    % (self.session.channel, " ".join(sorted(names, key=str.lower)))
                )
            )
        )
        return d

    def command_topic(self, text: str) -> defer.Deferred | None:
        """/topic [TEXT]"""
        d = self._guard(self.session.topic(text or None))
        if not text:
            d.addCallback(
                lambda topic: (
                    topic is not None
                    and self.write(
                        "-!- Topic of %s: %s" % (self.session.channel, topic)
                        if topic
                        else "-!- %s has no topic." % (self.session.channel,)
                    )
                )
            )
        return d

    def command_rooms(self, rest: str) -> None:
        """/rooms"""
        if self.list_rooms is None:
            self.write("-!- Room discovery is off (--connect was given).")
            return None
        lines = self.list_rooms()
        if not lines:
            self.write("-!- No rooms heard yet.")
        for line in lines:
            self.write("-!- " + line)
        return None

    def command_help(self, rest: str) -> None:
        """/help"""
        for line in HELP.splitlines():
            self.write(line)

    def command_quit(self, rest: str) -> None:
        """/quit [WHY]: leave; the room sees WHY as the quit reason."""
        self.quit(rest.strip() or "Leaving")

    command_exit = command_quit

    def _guard(self, d: defer.Deferred) -> defer.Deferred:
        """Show a refused command as one line instead of an error."""

        def show(failure: Failure) -> None:
            failure.trap(ClientError)
            self.write("-!- " + str(failure.value))

        return d.addErrback(show)


class ChatTerminal(HistoricRecvLine):
    """The line editor: the prompt and input at the bottom, events above.

    @ivar controller: the L{ChatController} lines go to (set before the
        terminal connects).
    """

    controller: ChatController
    prompt = "> "

    def __init__(self, on_quit: Callable[[], None] | None = None) -> None:
        self.on_quit = on_quit
        self._pending_utf8 = b""
        #: Fires once the terminal's connection is closed, which is after
        #: everything written to it reached the screen.
        self.closed: defer.Deferred[None] = defer.Deferred()

    def connectionLost(self, reason: Any = None) -> None:
        if not self.closed.called:
            self.closed.callback(None)

    def finish(self) -> None:
        """Erase the prompt and input line, leaving the cursor at the start
        of that (now empty) line: whatever is written after the terminal
        closes (C{Left #room.}) begins a line of its own."""
        self.terminal.write(b"\r")
        self.terminal.eraseLine()

    def connectionMade(self) -> None:
        self.ps = (self.prompt.encode("utf-8"),)
        super().connectionMade()

    def initializeScreen(self) -> None:
        # Leave what is on the screen alone (no reset): draw the prompt.
        self.terminal.write(self.ps[self.pn])
        self.setInsertMode()

    def set_prompt(self, prompt: str) -> None:
        """Change the prompt (shows the room and the nick)."""
        self.prompt = prompt
        self.ps = (prompt.encode("utf-8"),)
        if getattr(self, "terminal", None) is not None:
            self._redraw()

    def show(self, text: str) -> None:
        """Write a line above the input line, then redraw the input line as
        it was, cursor included."""
        self.terminal.write(b"\r")
        self.terminal.eraseLine()
        self.terminal.write(text.encode("utf-8", "replace") + b"\r\n")
        self._redraw_after_erase()

    def _redraw(self) -> None:
        self.terminal.write(b"\r")
        self.terminal.eraseLine()
        self._redraw_after_erase()

    def _redraw_after_erase(self) -> None:
        self.drawInputLine()
        behind = _columns(self.lineBuffer[self.lineBufferIndex :])
        if behind:
            self.terminal.cursorBackward(behind)

    # Cursor movement by screen columns, not characters: a CJK character
    # or an emoji takes two columns, a combining accent none.

    def handle_LEFT(self) -> None:
        if self.lineBufferIndex > 0:
            self.lineBufferIndex -= 1
            self._back(_columns(self.lineBuffer[self.lineBufferIndex :][:1]))

    def handle_RIGHT(self) -> None:
        if self.lineBufferIndex < len(self.lineBuffer):
            width = _columns(self.lineBuffer[self.lineBufferIndex :][:1])
            self.lineBufferIndex += 1
            if width:
                self.terminal.cursorForward(width)

    def handle_HOME(self) -> None:
        self._back(_columns(self.lineBuffer[: self.lineBufferIndex]))
        self.lineBufferIndex = 0

    def handle_END(self) -> None:
        width = _columns(self.lineBuffer[self.lineBufferIndex :])
        if width:
            self.terminal.cursorForward(width)
        self.lineBufferIndex = len(self.lineBuffer)

    def handle_BACKSPACE(self) -> None:
        if self.lineBufferIndex > 0:
            self.lineBufferIndex -= 1
            width = _columns(self.lineBuffer[self.lineBufferIndex :][:1])
            del self.lineBuffer[self.lineBufferIndex]
            self._back(width)
            if width:
                self.terminal.deleteCharacter(width)

    def handle_DELETE(self) -> None:
        if self.lineBufferIndex < len(self.lineBuffer):
            width = _columns(self.lineBuffer[self.lineBufferIndex :][:1])
            del self.lineBuffer[self.lineBufferIndex]
            if width:
                self.terminal.deleteCharacter(width)

    def _back(self, width: int) -> None:
        if width:
            self.terminal.cursorBackward(width)

    def keystrokeReceived(self, keyID: Any, modifier: Any) -> None:
        if keyID == b"\x03":  # Ctrl-C
            self._leave()
        elif keyID == b"\x04":  # Ctrl-D: leave on an empty line, as shells do
            if not self.lineBuffer:
                self._leave()
        elif keyID == b"\x0c":  # Ctrl-L: redraw
            self._redraw()
        elif keyID == b"\x15":  # Ctrl-U: clear the line
            self.lineBuffer = []
            self.lineBufferIndex = 0
            self._redraw()
        elif isinstance(keyID, bytes) and len(keyID) == 1 and keyID[0] >= 0x80:
            self._utf8_byte(keyID)
        else:
            super().keystrokeReceived(keyID, modifier)

    def _utf8_byte(self, byte: bytes) -> None:
        # Collect the bytes of one character, then insert it as one
        # element, so the cursor moves by characters, not bytes.
        self._pending_utf8 += byte
        try:
            self._pending_utf8.decode("utf-8")
        except UnicodeDecodeError as e:
            if e.reason == "unexpected end of data" and len(self._pending_utf8) < 4:
                return
            self._pending_utf8 = b""
            return
        character, self._pending_utf8 = self._pending_utf8, b""
        self.characterReceived(character, False)

    def _leave(self) -> None:
        self.terminal.write(b"\r")
        self.terminal.eraseLine()
        if self.on_quit is not None:
            self.on_quit()

    def lineReceived(self, line: bytes) -> None:
        # The typed line scrolls up with the prompt; redraw a fresh prompt.
        self.terminal.write(b"\r")
        self.terminal.eraseLine()
        self.drawInputLine()
        text = line.decode("utf-8", "replace")
        self.controller.line_entered(text)

    def handle_RETURN(self) -> None:
        # Erase the typed line instead of leaving it on screen: the host
        # echoes the message back at its place in the order.
        if self.lineBuffer:
            self.historyLines.append(b"".join(self.lineBuffer))
        self.historyPosition = len(self.historyLines)
        line = b"".join(self.lineBuffer)
        self.lineBuffer = []
        self.lineBufferIndex = 0
        self.lineReceived(line)


def _columns(characters: list[bytes]) -> int:
    """How many terminal columns typed characters (UTF-8 bytes each) take."""
    width = 0
    for character in characters:
        for char in character.decode("utf-8", "replace"):
            if unicodedata.combining(char):
                continue
            width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width
