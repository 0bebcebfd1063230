# -*- test-case-name: tests.test_client_main -*-
"""The chatroom console script: list rooms, find one, join it, or talk from scripts.

C{main()} is the only function here that touches the global reactor; every
command is a function C{(reactor, args, out) -> Deferred} that tests call
in-process with a fake C{out}.  See C{docs/client.rst}.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import os
import sys
from typing import Any, Callable, TextIO

from cryptography.hazmat.primitives import serialization
from twisted.internet import defer, interfaces, protocol
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.conch.insults.insults import ServerProtocol
from twisted.internet.stdio import StandardIO
from twisted.internet.task import deferLater
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from chatroom.client import errors
from chatroom.client.keys import client_key_path, load_client_identity
from chatroom.client.fanout import FanoutOptions
from chatroom.client.reconnect import RoomTarget
from chatroom.client.session import (
    RoomEvent,
    RoomFinder,
    RoomSession,
    parse_room_spec,
    room_spec,
    find_by_address,
    tls_endpoint,
)
from chatroom.client.ui import ChatController, ChatTerminal, format_event
from chatroom.core.directory import DirectoryChange, DirectoryEntry, Outcome
from chatroom.core.names import fingerprint, short_fingerprint
from chatroom.wellknown import DISCOVERY_GROUP, DISCOVERY_PORT
from chatroom.errors import ChatroomError
from chatroom.identity import colon_hex, spki_sha256
from chatroom.tls import PinnedClientCreator

#: Seconds C{chatroom rooms} listens after asking the network.
LISTEN_TIME = 1.5

#: Seconds to wait for a TLS handshake when fetching a certificate pin.
PIN_TIMEOUT = 5.0


#: The help of every command's C{--data-dir}.
DATA_DIR_HELP = (
    "where the client key is kept (default $XDG_DATA_HOME/chatroom"
    " or ~/.local/share/chatroom)"
)


def build_parser() -> argparse.ArgumentParser:
    """The command line: common discovery options and one subcommand each."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("discovery")
    group.add_argument(
        "--discovery-interface",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="address of the network interface to listen and ask on"
        " (default 127.0.0.1, as for the host; give your network"
        " interface's address to find rooms on the network)",
    )
    group.add_argument(
        "--discovery-group",
        default=DISCOVERY_GROUP,
        metavar="GROUP",
        help="multicast group (default %(default)s)",
    )
    group.add_argument(
        "--discovery-port",
        type=int,
        default=DISCOVERY_PORT,
        metavar="PORT",
        help="discovery UDP port (default %(default)s)",
    )
    common.add_argument("--data-dir", metavar="DIR", default=None, help=DATA_DIR_HELP)
    # fan-out (issue 10): multicast delivery, docs/client.rst.
    multicast = common.add_argument_group("multicast delivery")
    multicast.add_argument(
        "--fanout-interface",
        default=None,
        metavar="ADDRESS",
        help="address of the network interface to receive a room's multicast"
        " delivery on (default: the --discovery-interface address)",
    )
    multicast.add_argument(
        "--no-multicast",
        action="store_true",
        help="receive every event over TLS even when the room offers"
        " multicast delivery",
    )
    direct = common.add_argument_group("without discovery")
    direct.add_argument(
        "--connect",
        metavar="HOST:PORT",
        help="connect to this address instead of finding the room",
    )
    direct.add_argument(
        "--key",
        metavar="HEX",
        help="with --connect: the host's key fingerprint as"
        " it prints it at start (64 hex digits, or the"
        " short 16), or its public key (64 hex digits);"
        " 'chatroom find' prints them",
    )

    parser = argparse.ArgumentParser(
        prog="chatroom",
        description="Chat rooms with no central server: list the rooms on the"
        " network, find one, join it.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    rooms = commands.add_parser(
        "rooms", parents=[common], help="list the rooms on the network"
    )
    rooms.add_argument("--json", action="store_true", help="machine-readable output")
    rooms.add_argument(
        "--watch",
        action="store_true",
        help="keep listening and print every change (Ctrl-C stops)",
    )
    rooms.add_argument(
        "--commands",
        action="store_true",
        help="print irssi and WeeChat commands with the pins",
    )
    rooms.add_argument(
        "--listen-time",
        type=float,
        default=LISTEN_TIME,
        metavar="SECONDS",
        help="how long to listen (default %(default)s)",
    )

    find = commands.add_parser(
        "find", parents=[common], help="find one room (expanding-ring search)"
    )
    find.add_argument("room", metavar="ROOM|FINGERPRINT/ROOM")
    find.add_argument("--json", action="store_true", help="machine-readable output")

    pins = commands.add_parser(
        "pins",
        parents=[common],
        help="print a room's TLS pins and irssi/WeeChat commands",
    )
    pins.add_argument("room", metavar="ROOM|FINGERPRINT/ROOM")

    join = commands.add_parser("join", parents=[common], help="join a room and chat")
    join.add_argument("room", metavar="ROOM|FINGERPRINT/ROOM")
    join.add_argument(
        "--nick", default=None, help="your nickname (default: your user name)"
    )

    say = commands.add_parser(
        "say", parents=[common], help="send one message (each line of TEXT) and leave"
    )
    say.add_argument("room", metavar="ROOM|FINGERPRINT/ROOM")
    say.add_argument("text")
    say.add_argument("--nick", default=None, help="nickname (default: your user name)")

    tail = commands.add_parser(
        "tail", parents=[common], help="print a room's recent messages"
    )
    tail.add_argument("room", metavar="ROOM|FINGERPRINT/ROOM")
    tail.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="keep printing new messages (Ctrl-C stops)",
    )
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.add_argument(
        "--lines", "-n", type=int, default=20, help="how many (default 20)"
    )
    tail.add_argument("--nick", default=None, help="nickname (default: your user name)")

    for room_command in (join, say, tail):
        room_command.add_argument(
            "--password",
            default=None,
            help="the room password of a private room (its host was started "
            "with --private --room-password)",
        )

    whoami = commands.add_parser(
        "whoami", help="print this client's key fingerprint (made on first use)"
    )
    whoami.add_argument("--data-dir", metavar="DIR", default=None, help=DATA_DIR_HELP)
    return parser


def default_nick() -> str:
    """A nick for scripts: the user name, made a valid IRC nick."""
    try:
        # LOGNAME, USER, then the password database (as getpass does), so
        # a shell without USER set (cron, some containers) still has one.
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "user"
    cleaned = "".join(c for c in name if c.isascii() and (c.isalnum() or c in "-_"))
    if not cleaned or not cleaned[0].isalpha():
        cleaned = "u" + cleaned
    return cleaned[:30]


def fanout_options(args: argparse.Namespace) -> FanoutOptions | None:
    """How sessions take multicast delivery (C{None}: TLS only)."""
    if args.no_multicast:
        return None
    return FanoutOptions(interface=args.fanout_interface or args.discovery_interface)


def make_finder(reactor: Any, args: argparse.Namespace) -> RoomFinder:
    """The discovery listener the options describe."""
    return RoomFinder(
        reactor,
        interface=args.discovery_interface,
        group=args.discovery_group,
        port=args.discovery_port,
    )


# Pins


def spki_pin(q: bytes) -> str:
    """irssi's C{-tls_pinned_pubkey}: SHA-256 of the SubjectPublicKeyInfo
    of C{Q}, colon hex.  Computed from C{Q} alone (no connection)."""
    return colon_hex(spki_sha256(q))


@implementer(interfaces.IHandshakeListener)
class _CertificateGrab(protocol.Protocol):
    """Completes a pinned TLS handshake, keeps the certificate, hangs up
    without sending a byte."""

    def __init__(self) -> None:
        self.done: Deferred[bytes] = Deferred()
        self.der: bytes | None = None

    def handshakeCompleted(self) -> None:
        certificate = self.transport.getPeerCertificate()
        self.der = certificate.to_cryptography().public_bytes(
            serialization.Encoding.DER
        )
        self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        if self.der is not None:
            self.done.callback(self.der)
        else:
            self.done.errback(reason)


@inlineCallbacks
def fetch_certificate_pin(
    reactor: Any, target: RoomTarget, timeout: float = PIN_TIMEOUT
):
    """WeeChat's C{ssl_fingerprint}: SHA-256 of the host's certificate.

    The certificate is signed by the host's private key, so a client that
    knows only C{Q} cannot compute it: this makes one TLS handshake,
    pinned to C{Q}, and hangs up before any IRC byte.
    """
    last: Exception | None = None
    for address in target.addresses:
        creator = PinnedClientCreator(target.q)
        endpoint = tls_endpoint(reactor, address, creator, timeout=timeout)
        try:
            grab = yield endpoint.connect(
                protocol.Factory.forProtocol(_CertificateGrab)
            )
            der = yield grab.done.addTimeout(timeout, reactor)
        except Exception as e:
            last = e
            if creator.seen_key is not None and creator.seen_key != target.q:
                raise errors.KeyMismatch(
                    "#" + target.room,
                    address,
                    short_fingerprint(target.q),
                    short_fingerprint(creator.seen_key),
                ) from None
            continue
        return hashlib.sha256(der).hexdigest()
    raise errors.HostUnreachable("#" + target.room, target.addresses, str(last))


def connect_commands(target: RoomTarget, certificate_pin: str | None) -> list[str]:
    """Ready-to-paste irssi and WeeChat 3.8 commands for C{target}."""
    host, _, port = target.addresses[0].rpartition(":")
    host = host.strip("[]")
    lines = [
        "irssi:   /connect -tls -tls_pinned_pubkey %s %s %s"
        % (spki_pin(target.q), host, port)
    ]
    name = "%s-%s" % (target.room, short_fingerprint(target.q)[:6])
    if certificate_pin is not None:
        lines.append(
            "WeeChat: /server add %s %s/%s -ssl -ssl_fingerprint=%s"
            % (name, host, port, certificate_pin)
        )
    else:
        lines.append(
            "WeeChat: run 'chatroom pins %s' for the certificate pin"
            % (room_spec(target.q, target.room),)
        )
    lines.append("then:    /join #%s" % (target.room,))
    return lines


# Output helpers


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return "%ds ago" % (seconds,)
    if seconds < 3600:
        return "%dm ago" % (seconds // 60,)
    return "%dh ago" % (seconds // 3600,)


def _flags(entry: DirectoryEntry) -> str:
    flags = []
    if entry.announcement.private:
        flags.append("private")
    if entry.announcement.multicast_delivery:
        flags.append("multicast")
    return ",".join(flags) or "-"


def room_json(entry: DirectoryEntry, now: float) -> dict[str, Any]:
    """One room of the directory as a JSON-ready dict."""
    a = entry.announcement
    return {
        "room": a.room,
        "spec": room_spec(a.q, a.room),
        "fingerprint": fingerprint(a.q),
        "short_fingerprint": short_fingerprint(a.q),
        "public_key": a.q.hex(),
        "addresses": [str(address) for address in a.addresses],
        "counter": a.counter,
        "last_heard_seconds_ago": round(now - entry.last_heard, 3),
        "expires_in_seconds": round(entry.remaining(now), 3),
        "private": a.private,
        "multicast_delivery": a.multicast_delivery,
        "irssi_pin": spki_pin(a.q),
    }


def room_lines(entries: list[DirectoryEntry], now: float) -> list[str]:
    """The room table, a header line first."""
    rows = [("ROOM", "FINGERPRINT", "ADDRESSES", "HEARD", "FLAGS")]
    for entry in entries:
        a = entry.announcement
        rows.append(
            (
                a.room,
                a.short_fingerprint,
                " ".join(str(x) for x in a.addresses),
                _ago(now - entry.last_heard),
                _flags(entry),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths + [0])).rstrip()
        for row in rows
    ]


# Commands


@inlineCallbacks
def command_rooms(reactor: Any, args: argparse.Namespace, out: TextIO):
    """C{chatroom rooms}: ask, listen, print (and keep printing with --watch)."""
    finder = make_finder(reactor, args)
    yield finder.start()
    try:
        finder.ask()
        yield deferLater(reactor, args.listen_time, lambda: None)
        now = reactor.seconds()
        entries = finder.rooms()
        pins: dict[tuple[bytes, str], str | None] = {}
        if args.commands:
            results = yield defer.DeferredList(
                [
                    fetch_certificate_pin(
                        reactor, RoomTarget.from_announcement(e.announcement)
                    )
                    for e in entries
                ],
                consumeErrors=True,
            )
            for entry, (ok, value) in zip(entries, results):
                pins[entry.key] = value if ok else None
        if args.json:
            listed = [room_json(e, now) for e in entries]
            if args.commands:
                for item, entry in zip(listed, entries):
                    item["weechat_pin"] = pins.get(entry.key)
                    item["commands"] = connect_commands(
                        RoomTarget.from_announcement(entry.announcement),
                        pins.get(entry.key),
                    )
            out.write(json.dumps(listed, indent=None if args.watch else 2) + "\n")
        elif not entries:
            out.write(
                "No rooms heard on %s (group %s port %d); is"
                " --discovery-interface the right network?\n"
                % (args.discovery_interface, args.discovery_group, args.discovery_port)
            )
        else:
            for line in room_lines(entries, now):
                out.write(line + "\n")
            if args.commands:
                for entry in entries:
                    out.write(
                        "\n%s\n"
                        % (room_spec(entry.announcement.q, entry.announcement.room),)
                    )
                    for line in connect_commands(
                        RoomTarget.from_announcement(entry.announcement),
                        pins.get(entry.key),
                    ):
                        out.write("  " + line + "\n")
        out.flush()
        if args.watch:

            def changed(change: DirectoryChange) -> None:
                out.write(change_line(change, reactor.seconds(), args.json) + "\n")
                out.flush()

            finder.watch(changed)
            yield args.stop_requested  # SIGTERM or Ctrl-C
    finally:
        yield finder.stop()


def change_line(change: DirectoryChange, now: float, as_json: bool) -> str:
    """One line for C{rooms --watch}: C{+} new, C{~} moved, C{-} gone."""
    entry = change.entry
    mark = {Outcome.ADDED: "+", Outcome.UPDATED: "~"}.get(change.outcome, "-")
    if as_json:
        item = room_json(entry, now)
        item["change"] = change.outcome.value
        return json.dumps(item)
    a = entry.announcement
    return "%s %s  %s  %s  (%s)" % (
        mark,
        a.room,
        a.short_fingerprint,
        " ".join(str(x) for x in a.addresses),
        change.outcome.value,
    )


@inlineCallbacks
def resolve(reactor: Any, args: argparse.Namespace, finder: RoomFinder | None):
    """The room the arguments name: C{--connect}/C{--key}, or a search."""
    if args.connect:
        if not args.key:
            raise errors.BadRoomSpec(
                "--connect needs --key with the host's key fingerprint (as"
                " the host prints it at start) or public key; 'chatroom find"
                " ROOM' prints both."
            )
        room, _ = parse_room_spec(args.room)
        target = yield find_by_address(reactor, args.connect, args.key, room)
        return target
    announcement = yield finder.find(args.room)
    return RoomTarget.from_announcement(announcement)


@inlineCallbacks
def command_find(reactor: Any, args: argparse.Namespace, out: TextIO):
    """C{chatroom find}: expanding-ring search, then where the room is."""
    finder = make_finder(reactor, args)
    yield finder.start()
    try:
        target = yield resolve(reactor, args, finder)
    finally:
        yield finder.stop()
    a = target.announcement
    if args.json:
        out.write(
            json.dumps(
                {
                    "room": target.room,
                    "spec": room_spec(target.q, target.room),
                    "fingerprint": fingerprint(target.q),
                    "short_fingerprint": short_fingerprint(target.q),
                    "public_key": target.q.hex(),
                    "addresses": list(target.addresses),
                    "counter": target.counter,
                    "private": bool(a and a.private),
                    "multicast_delivery": bool(a and a.multicast_delivery),
                    "irssi_pin": spki_pin(target.q),
                },
                indent=2,
            )
            + "\n"
        )
    else:
        out.write(
            "%s  at %s\n"
            % (room_spec(target.q, target.room), " ".join(target.addresses))
        )
        out.write("  key fingerprint %s\n" % (fingerprint(target.q),))
        out.write("  public key %s\n" % (target.q.hex(),))
        out.write("  irssi pin %s\n" % (spki_pin(target.q),))
        out.write("  join: chatroom join %s\n" % (room_spec(target.q, target.room),))
    out.flush()


@inlineCallbacks
def command_pins(reactor: Any, args: argparse.Namespace, out: TextIO):
    """C{chatroom pins}: both pins and the irssi/WeeChat commands."""
    finder = None if args.connect else make_finder(reactor, args)
    if finder is not None:
        yield finder.start()
    try:
        target = yield resolve(reactor, args, finder)
    finally:
        if finder is not None:
            yield finder.stop()
    pin = yield fetch_certificate_pin(reactor, target)
    out.write("public-key pin (irssi):   %s\n" % (spki_pin(target.q),))
    out.write("certificate pin (WeeChat): %s\n" % (pin,))
    for line in connect_commands(target, pin):
        out.write(line + "\n")
    out.flush()


@inlineCallbacks
def _open_session(
    reactor: Any,
    args: argparse.Namespace,
    nick: str,
    recent: int,
    on_event: Callable[[RoomEvent], None],
    on_status: Callable[[str], None],
    keep_finder: bool,
    multicast: bool = False,
    read_only: bool = False,
    hide_own_membership: bool = False,
    take_over: bool = True,
):
    finder = None if args.connect else make_finder(reactor, args)
    if finder is not None:
        yield finder.start()
    try:
        identity = load_client_identity(args.data_dir)
        target = yield resolve(reactor, args, finder)
        session = RoomSession(
            reactor,
            target,
            nick,
            finder=finder if keep_finder else None,
            on_event=on_event,
            on_status=on_status,
            recent=recent,
            identity=identity,
            password=getattr(args, "password", None),
            fanout=fanout_options(args) if multicast else None,
            read_only=read_only,
            hide_own_membership=hide_own_membership,
            take_over=take_over,
        )
        yield session.connect()
    except BaseException:
        if finder is not None:
            yield finder.stop()
        raise
    if finder is not None and not keep_finder:
        yield finder.stop()
        finder = None
    return session, finder


@inlineCallbacks
def command_say(reactor: Any, args: argparse.Namespace, out: TextIO):
    """C{chatroom say ROOM TEXT}: join, send each line, leave."""
    session, _ = yield _open_session(
        reactor,
        args,
        args.nick or default_nick(),
        0,
        lambda e: None,
        lambda s: None,
        False,
        # A one-shot message never displaces a session of the same user.
        take_over=False,
    )
    try:
        for line in args.text.splitlines() or [""]:
            if line:
                yield session.say(line)
    finally:
        yield session.close("chatroom say")


@inlineCallbacks
def command_tail(reactor: Any, args: argparse.Namespace, out: TextIO):
    """C{chatroom tail ROOM [--follow] [--json]}."""

    def show(event: RoomEvent) -> None:
        if args.json:
            out.write(json.dumps(event.to_json()) + "\n")
        else:
            out.write(format_event(event) + "\n")
        out.flush()

    def status(text: str) -> None:
        sys.stderr.write("chatroom: %s\n" % (text,))

    session, finder = yield _open_session(
        reactor,
        args,
        args.nick or default_nick(),
        args.lines,
        show,
        status,
        args.follow,
        multicast=args.follow,
        # Reading without following need not join: the room is not shown
        # a JOIN and a QUIT each time someone looks at it.
        read_only=not args.follow,
        # Where it must join (a closed room, or to follow), its own JOIN
        # and QUIT are not the room's news.
        hide_own_membership=True,
        # Only a follower resumes its own session after a drop; a one-shot
        # read never displaces a session of the same user.
        take_over=args.follow,
    )
    try:
        if args.follow:
            yield args.stop_requested  # SIGTERM or Ctrl-C
    finally:
        yield session.close("chatroom tail")
        if finder is not None:
            yield finder.stop()


class _PlainLines(LineReceiver):
    """C{chatroom join} when standard input is not a terminal: one typed
    line per message, events printed as lines."""

    delimiter = b"\n"

    def __init__(self, controller: ChatController, on_end: Callable[[], None]) -> None:
        self.controller = controller
        self.on_end = on_end

    def lineReceived(self, line: bytes) -> None:
        self.controller.line_entered(line.decode("utf-8", "replace").rstrip("\r"))

    def connectionLost(self, reason: Any = None) -> None:
        self.on_end()


@inlineCallbacks
def command_join(
    reactor: Any, args: argparse.Namespace, out: TextIO, stdin_fd: int = 0
):
    """C{chatroom join ROOM [--nick NICK]}: the interactive chat."""
    write: list[Callable[[str], None]] = [
        lambda text: (out.write(text + "\n"), out.flush())
    ]
    done: Deferred[None] = Deferred()

    def leave(reason: str = "Leaving") -> None:
        if not done.called:
            done.callback(reason)

    def list_rooms() -> list[str]:
        if finder is None:
            return []
        return room_lines(finder.rooms(), reactor.seconds())[1:]

    controller = ChatController(None, lambda text: write[0](text), leave, list_rooms)
    args.stop_requested.addCallback(lambda _: leave())
    finder = None
    session, finder = yield _open_session(
        reactor,
        args,
        args.nick or default_nick(),
        20,
        controller.event_received,
        controller.status,
        True,
        multicast=True,
    )
    controller.session = session
    if finder is None:
        controller.list_rooms = None
    saved_tty = None
    terminal = None
    if os.isatty(stdin_fd):
        import termios
        import tty

        saved_tty = termios.tcgetattr(stdin_fd)
        tty.setraw(stdin_fd)
        terminal = ChatTerminal(on_quit=leave)
        terminal.controller = controller
        terminal.prompt = "[%s %s] " % (session.channel, session.nick)
        stdio = StandardIO(ServerProtocol(lambda: terminal), reactor=reactor)
        write[0] = terminal.show
    else:
        stdio = StandardIO(_PlainLines(controller, leave), reactor=reactor)

    def restore() -> None:
        if saved_tty is not None:
            import termios

            termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved_tty)

    trigger = reactor.addSystemEventTrigger("after", "shutdown", restore)
    reason = "Leaving"
    try:
        reason = yield done
    finally:
        if terminal is not None:
            # The chat screen is going: nothing more is drawn on it.  Lines
            # from a pipe keep being printed while the session closes, so
            # that the echoes of the last messages piped in are shown.
            write[0] = lambda text: None
        yield session.close(reason)
        if finder is not None:
            yield finder.stop()
        if terminal is not None:
            # The prompt is on the screen's last line: erase it, and wait
            # until that has been written, so that "Left" (written another
            # way) starts the line rather than following the prompt.
            terminal.finish()
            stdio.loseConnection()
            yield terminal.closed
        else:
            stdio.loseConnection()
        restore()
        reactor.removeSystemEventTrigger(trigger)
        out.write("Left %s.\n" % (session.channel,))
        out.flush()


def command_whoami(
    reactor: Any, args: argparse.Namespace, out: TextIO
) -> Deferred[None]:
    """C{chatroom whoami}: the client key's fingerprint (the key is made on
    first use); hosts name this client by it (ghost takeover, allow-lists)."""
    identity = load_client_identity(args.data_dir)
    out.write("client key fingerprint %s\n" % (identity.fingerprint,))
    out.write("  short fingerprint %s\n" % (identity.short_fingerprint,))
    out.write("  key file %s\n" % (client_key_path(args.data_dir),))
    out.flush()
    return defer.succeed(None)


COMMANDS: dict[str, Callable[[Any, argparse.Namespace, TextIO], Deferred]] = {
    "rooms": command_rooms,
    "find": command_find,
    "pins": command_pins,
    "join": command_join,
    "say": command_say,
    "tail": command_tail,
    "whoami": command_whoami,
}


def run(
    reactor: Any,
    argv: list[str],
    out: TextIO | None = None,
    err: TextIO | None = None,
    stop_requested: Deferred[int] | None = None,
) -> Deferred[None]:
    """Run one command line; fails with C{SystemExit(1)} after printing a
    one-line error for every L{ChatroomError}.

    @param stop_requested: fires (with the signal number) when the user
        wants the command to stop: C{tail --follow}, C{rooms --watch} and
        C{join} then finish as if done (leaving the room cleanly).
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    args = build_parser().parse_args(argv)
    args.stop_requested = stop_requested if stop_requested is not None else Deferred()
    d = defer.maybeDeferred(COMMANDS[args.command], reactor, args, out)

    def one_line(failure: Any) -> None:
        failure.trap(ChatroomError)
        err.write("chatroom: %s\n" % (failure.value,))
        err.flush()
        raise SystemExit(1)

    return d.addErrback(one_line)


def run_until_signal(reactor: Any, argv: list[str]) -> Deferred[None]:
    """L{run} with SIGTERM and SIGINT (Ctrl-C) asking the command to stop.

    The command finishes its own way (the session quits the room, discovery
    sockets close) instead of the reactor stopping under it, which left a
    suspended generator behind ("generator ignored GeneratorExit").  It
    then exits 0 after SIGTERM and 130 (128 + SIGINT) after SIGINT, as
    shells expect.  A second signal stops the reactor at once.
    """
    import signal

    stop_requested: Deferred[int] = Deferred()
    caught: list[int] = []

    def requested(signum: int) -> None:
        if not stop_requested.called:
            stop_requested.callback(signum)
        else:
            reactor.stop()

    def handler(signum: int, frame: Any) -> None:
        caught.append(signum)
        reactor.callFromThread(requested, signum)

    def install() -> None:
        # After the reactor's own handlers, which stop it at once.
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    reactor.callWhenRunning(install)

    def exit_status(result: Any) -> Any:
        if caught:
            raise SystemExit(130 if caught[0] == signal.SIGINT else 0)
        return result

    return run(reactor, argv, stop_requested=stop_requested).addBoth(exit_status)


def main(argv: list[str] | None = None) -> None:
    """The C{chatroom} console script."""
    from twisted.internet import task

    argv = list(sys.argv[1:] if argv is None else argv)
    build_parser().parse_args(argv)  # --help and usage errors before the reactor
    task.react(lambda reactor: run_until_signal(reactor, argv))


if __name__ == "__main__":
    main()
