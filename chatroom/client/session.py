# -*- test-case-name: tests.test_client_session -*-
"""The chatroom client API: find a room, join it, talk, and stay joined while the host moves.

Two classes do the work; the console script (L{chatroom.client.main}) is
built on them and nothing else:

- L{RoomFinder} listens to discovery on one interface, keeps the room
  directory and resolves what a user typed (C{lobby} or
  C{FINGERPRINT/lobby}) to one signed announcement, with an expanding-ring
  search when the directory does not hold it yet.
- L{RoomSession} is one membership of one room: C{connect()} (a Deferred
  that fires once joined and caught up), C{say()}, C{action()},
  C{change_nick()}, C{names()}, C{topic()}, C{close()}, and an C{on_event}
  callback called with every L{RoomEvent} exactly once, in the host's
  order.  A L{~chatroom.client.reconnect.ReconnectMachine} keeps it joined:
  after a drop it reconnects with backoff, follows a newer announcement
  when the host moved, and fetches what it missed with
  C{CHATHISTORY AFTER} the last sequence number it saw.

The reactor (and clock) is passed in; nothing here reads the global one.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

import attrs
from twisted.internet import defer, endpoints, interfaces, protocol
from twisted.internet import error as twisted_errors
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatroom.client import errors
from chatroom.client.fanout import FanoutOptions, MulticastDelivery
from chatroom.client.keepalive import PROBE_INTERVAL, PROBE_TIMEOUT
from chatroom.client.keys import KeyPin
from chatroom.client.protocol import NickInUse as ProtocolNickInUse
from chatroom.client.protocol import CLIENT_CAPS, RoomClientProtocol
from chatroom.client.split import (
    ACTION_OVERHEAD,
    DEFAULT_LINELEN,
    MIN_BUDGET,
    estimated_source,
    split_text,
    text_budget,
)
from chatroom.client.reconnect import (
    ReconnectMachine,
    ReconnectState,
    RoomTarget,
)
from chatroom.core.directory import DirectoryChange, DirectoryEntry, Outcome
from chatroom.core.discovery import (
    MAX_ROOM_NAME_BYTES,
    Announcement,
    ParseError,
    RoomAddress,
    fingerprint_prefix_from_hex,
    short_fingerprint,
)
from chatroom.core.ircline import Message, parse_server_time
from chatroom.core.names import casefold, parse_msgid, valid_room_name
from chatroom.core.search import DEFAULT_RINGS, Ring
from chatroom.discovery import (
    DiscoveryService,
    ListenerProtocol,
)
from chatroom.tls import PinnedClientCreator
from chatroom.wellknown import (
    DISCOVERY_GROUP,
    DISCOVERY_PORT,
    DISCOVERY_TTL,
    TAKEOVER_CAPABILITY,
    TAKEOVER_REASON,
)

__all__ = [
    "RoomEvent",
    "RoomFinder",
    "RoomSession",
    "RoomTarget",
    "parse_room_spec",
]

#: Seconds to keep listening after the first answer to a search, so that the
#: answers of other hosts serving a room of the same name arrive too (the
#: protocol delays answers by at most 120 ms).
COLLECT_TIME = 0.25

#: Seconds a connection attempt (TCP, TLS, registration, join, catch-up)
#: may take before it counts as failed.
ATTEMPT_TIMEOUT = 20.0

#: Events of recent history shown when joining for the first time.
RECENT_HISTORY = 20

#: Seconds between two "Could not reconnect ... still trying" lines that
#: give the same reason: the first failed attempt is reported at once,
#: then the user hears again only when the reason changes or a minute
#: has passed, not on every attempt of the backoff (a newcomer saw five
#: lines in 21 s while a host restarted).
RETRY_NOTE_INTERVAL = 60.0

#: CHATHISTORY limit per request (the host's CHATHISTORY=100).
HISTORY_PAGE = 100

#: Messages kept while reconnecting (LIMITS.md "Client"): at most this
#: many, and at most L{MAX_PENDING_BYTES} of text; beyond that the message
#: is refused with L{errors.NotSent} and the user told, never dropped
#: silently.
MAX_PENDING = 100
MAX_PENDING_BYTES = 64 * 1024

#: Seconds between attempts to take back the wanted nick while the session
#: uses a fallback (C{alice_}) and has not seen the holder leave the room.
REGAIN_INTERVAL = 60.0

_ROOM_COMMANDS = frozenset({"PRIVMSG", "NOTICE", "JOIN", "PART", "TOPIC", "KICK"})

_log = Logger()


def parse_room_spec(text: str) -> tuple[str, bytes]:
    """Read C{ROOM} or C{FINGERPRINT/ROOM} (a leading C{#} is allowed).

    @return: the room name and the fingerprint prefix bytes (empty: any key).
    @raise errors.BadRoomSpec: with a sentence saying what was wrong.
    """
    fingerprint, _, room = text.rpartition("/")
    room = room[1:] if room.startswith("#") else room
    if not valid_room_name(room, MAX_ROOM_NAME_BYTES):
        # The hosts' rule (chatroom.core.names), not the wider one of the
        # discovery wire format: a name no host can open is never searched.
        raise errors.BadRoomSpec(
            "%r is not a room: write ROOM or FINGERPRINT/ROOM, the room name"
            " being letters, digits and '-_.' only." % (text,)
        )
    try:
        prefix = fingerprint_prefix_from_hex(fingerprint) if fingerprint else b""
    except (ParseError, ValueError) as e:
        raise errors.BadRoomSpec(
            "%r is not a room: write ROOM or FINGERPRINT/ROOM (%s)." % (text, e)
        ) from None
    return room, prefix


def room_spec(q: bytes, room: str) -> str:
    """The C{FINGERPRINT/ROOM} form people type to name one room exactly."""
    return "%s/%s" % (short_fingerprint(q), room)


@attrs.frozen
class RoomEvent:
    """One thing that happened in a room, ready to show.

    @ivar kind: C{message}, C{action}, C{notice}, C{join}, C{part}, C{quit},
        C{topic}, C{kick} or C{nick}.
    @ivar sender: the nick that did it.
    @ivar text: the message, reason, topic or (for C{nick}) the new nick.
    @ivar seq: the host's sequence number (C{None} for unnumbered events
        such as nick changes).
    @ivar time_ms: when the host accepted it (milliseconds since the epoch),
        if the host said.
    @ivar own: True if the sender is this session's own nick.
    @ivar replayed: True if it came from history rather than live.
    """

    kind: str
    sender: str
    text: str = ""
    seq: int | None = None
    time_ms: int | None = None
    own: bool = False
    replayed: bool = False

    def to_json(self) -> dict[str, Any]:
        """The event as a JSON-ready dict (C{tail --json})."""
        return attrs.asdict(self)


@attrs.define(eq=False)
class _Outgoing:
    """One line of a message on its way: queued, sent and awaiting its echo,
    or in doubt (sent on a connection that dropped before the echo)."""

    kind: str  # "message" or "action"
    text: str  # what the user sees (one piece of a split message)
    done: Deferred
    label: str | None = None
    sent_on: Any = None
    in_doubt: bool = False
    first: bool = True  # the first line of what the user typed

    @property
    def wire_text(self) -> str:
        if self.kind == "action":
            return "\x01ACTION %s\x01" % (self.text,)
        return self.text

    @property
    def size(self) -> int:
        return len(self.text.encode("utf-8"))


def event_from_message(
    message: Message, channel: str, room_key: str, own_nick: str
) -> RoomEvent | None:
    """The L{RoomEvent} a server line means for room C{channel}, or C{None}
    if the line is not an event of that room."""
    command = message.command
    params = message.params
    if command in _ROOM_COMMANDS:
        if not params or casefold(params[0]) != casefold(channel):
            return None
    elif command not in ("QUIT", "NICK"):
        return None
    sender = (message.prefix or "").partition("!")[0]
    text = (
        params[-1] if len(params) > 1 or command in ("QUIT", "NICK") and params else ""
    )
    kind = command.lower()
    if command == "PRIVMSG" and text.startswith("\x01ACTION") and text.endswith("\x01"):
        kind, text = "action", text[len("\x01ACTION") : -1].strip()
    elif command == "PRIVMSG":
        kind = "message"
    elif command == "KICK" and len(params) > 1:
        text = " ".join(params[1:])
    seq = None
    msgid = message.tags.get("msgid")
    if msgid is not None:
        parsed = parse_msgid(msgid)
        if parsed is not None and parsed[0] == room_key:
            seq = parsed[1]
    time_ms = None
    if "time" in message.tags:
        try:
            time_ms = parse_server_time(message.tags["time"])
        except ValueError:
            time_ms = None
    return RoomEvent(
        kind=kind,
        sender=sender,
        text=text,
        seq=seq,
        time_ms=time_ms,
        own=casefold(sender) == casefold(own_nick),
        replayed="batch" in message.tags,
    )


class RoomFinder:
    """Discovery for a client: the live directory and finding one room.

    @ivar listener: the L{ListenerProtocol} (its C{directory} is the list
        of rooms heard so far).
    """

    def __init__(
        self,
        reactor: Any,
        interface: str = "127.0.0.1",
        group: str = DISCOVERY_GROUP,
        port: int = DISCOVERY_PORT,
        rings: Sequence[Ring] = DEFAULT_RINGS,
        collect_time: float = COLLECT_TIME,
    ) -> None:
        self.reactor = reactor
        self.rings = tuple(rings)
        self.collect_time = collect_time
        self.listener = ListenerProtocol(
            reactor, group, port, interface, on_change=self._changed
        )
        self.service = DiscoveryService(reactor, self.listener)
        self._watchers: list[Callable[[DirectoryChange], None]] = []

    def start(self) -> Deferred[None]:
        """Open the discovery sockets; fires once the group is joined."""
        self.service.startService()
        return self.listener.ready

    def stop(self) -> Deferred[None]:
        """Close the discovery sockets."""
        if not self.service.running:
            return defer.succeed(None)
        return self.service.stopService()

    def watch(self, callback: Callable[[DirectoryChange], None]) -> Callable[[], None]:
        """Call C{callback} with every change of the directory; returns a
        function that stops it."""
        self._watchers.append(callback)
        return lambda: (
            self._watchers.remove(callback) if callback in self._watchers else None
        )

    def _changed(self, change: DirectoryChange) -> None:
        for watcher in list(self._watchers):
            watcher(change)

    def ask(
        self,
        room: str | None = None,
        fingerprint_prefix: bytes = b"",
        ttl: int = DISCOVERY_TTL,
    ) -> None:
        """Ask the network once (any room by default); answers fill the
        directory."""
        self.listener.ask(room, fingerprint_prefix, ttl)

    def rooms(self) -> list[DirectoryEntry]:
        """Every room heard and not expired, by name then key."""
        return self.listener.directory.entries(self.reactor.seconds())

    @inlineCallbacks
    def find(self, spec: str):
        """Resolve C{ROOM} or C{FINGERPRINT/ROOM} to one announcement.

        @return: a Deferred firing with the L{Announcement}.
        @raise errors.NoSuchRoom: nobody answered the search.
        @raise errors.AmbiguousRoom: several hosts serve a room of that name.
        """
        room, prefix = parse_room_spec(spec)
        result = yield self.listener.search(room, prefix, self.rings)
        if not result.found:
            raise errors.NoSuchRoom(spec)
        # Other hosts with a room of that name answer the same query within
        # 120 ms; listen that long so the user can be asked to pick.
        yield deferLater(self.reactor, self.collect_time, lambda: None)
        matches = self.listener.directory.find(self.reactor.seconds(), room, prefix)
        keys = {entry.announcement.q for entry in matches}
        if len(keys) > 1:
            raise errors.AmbiguousRoom(room, sorted(room_spec(q, room) for q in keys))
        if matches:
            return matches[0].announcement
        return result.announcement


def target_for_address(address: str, key: str, room: str) -> RoomTarget:
    """A target given by hand with the public key itself (64 hex digits).

    @raise errors.BadRoomSpec: C{address} is not C{HOST:PORT} or C{key} is
        not 64 hex digits.
    """
    pin = KeyPin.parse(key)
    _check_address(address)
    if pin.exact_key is None:
        raise errors.BadRoomSpec(
            "This needs the host's public key (64 hex digits); use"
            " find_by_address() with a fingerprint."
        )
    return RoomTarget(pin.exact_key, room, (address,), -1)


def _check_address(address: str) -> None:
    try:
        RoomAddress.parse(address)
    except ParseError:
        raise errors.BadRoomSpec(
            "--connect takes HOST:PORT, such as 192.0.2.7:6697; %r is not"
            " one." % (address,)
        ) from None


@implementer(interfaces.IHandshakeListener)
class _KeyProbe(protocol.Protocol):
    """Completes a TLS handshake and hangs up without sending a byte."""

    def __init__(self) -> None:
        self.done: Deferred[None] = Deferred()
        self.completed = False

    def handshakeCompleted(self) -> None:
        self.completed = True
        self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        if self.completed:
            self.done.callback(None)
        else:
            self.done.errback(reason)


@inlineCallbacks
def find_by_address(
    reactor: Any,
    address: str,
    key: str,
    room: str,
    timeout: float = 10.0,
    endpoint_for: Callable[[str, PinnedClientCreator], Any] | None = None,
):
    """A target given by hand (C{--connect HOST:PORT --key KEY}).

    C{key} is what the host prints (its key fingerprint, 64 hex digits, or
    the short one, 16) or its public key (64 hex digits).  One TLS
    handshake with C{address} reads the server's key and checks it against
    C{key} inside the handshake; no IRC byte is sent.

    @return: a Deferred firing with the L{RoomTarget} for the server's key.
    @raise errors.BadRoomSpec: C{address} or C{key} is malformed.
    @raise errors.KeyPinMismatch: the server has another key.
    @raise errors.HostUnreachable: no handshake with C{address}.
    """
    pin = KeyPin.parse(key)
    _check_address(address)
    creator = PinnedClientCreator(None, accept=pin.matches)
    endpoint = (
        endpoint_for or (lambda a, c: tls_endpoint(reactor, a, c, timeout=timeout))
    )(address, creator)
    try:
        probe = yield endpoint.connect(protocol.Factory.forProtocol(_KeyProbe))
        yield probe.done.addTimeout(timeout, reactor)
    except Exception as e:
        if creator.seen_key is not None and not pin.matches(creator.seen_key):
            raise errors.KeyPinMismatch(
                "#" + room, address, pin.describe(), short_fingerprint(creator.seen_key)
            ) from None
        raise errors.HostUnreachable("#" + room, (address,), _reason_text(e)) from None
    if creator.seen_key is None or not pin.matches(creator.seen_key):
        raise errors.HostUnreachable(
            "#" + room, (address,), "the TLS handshake showed no Ed25519 key"
        )
    return RoomTarget(creator.seen_key, room, (address,), -1)


def tls_endpoint(
    reactor: Any, address: str, creator: PinnedClientCreator, timeout: float = 10.0
) -> Any:
    """A TLS client endpoint for C{host:port} pinned with C{creator}."""
    parsed = RoomAddress.parse(address)
    if ":" in parsed.host:
        tcp = endpoints.TCP6ClientEndpoint(
            reactor, parsed.host, parsed.port, timeout=timeout
        )
    else:
        tcp = endpoints.TCP4ClientEndpoint(
            reactor, parsed.host, parsed.port, timeout=timeout
        )
    return endpoints.wrapClientTLS(creator, tcp)


class _ConnectionListener:
    """Routes one connection's lines to its session, ignoring stale ones."""

    def __init__(self, session: RoomSession) -> None:
        self.session = session
        self.protocol: RoomClientProtocol | None = None

    def message_received(self, message: Message) -> None:
        self.session._message_received(self.protocol, message)

    def connection_lost(self, reason: Failure) -> None:
        self.session._connection_lost(self.protocol, reason)


class RoomSession:
    """One membership of one room, kept alive across drops and host moves.

    @param reactor: the reactor to connect with (and clock, unless C{clock}).
    @param target: the room's L{Announcement} or a L{RoomTarget}.
    @param nick: the nickname to register with.
    @param finder: a started L{RoomFinder}: the session follows newer
        announcements heard there and relays the room's announcement to
        searchers while joined.  Without one, it reconnects to the same
        addresses only.
    @param on_event: called with every L{RoomEvent} of the room, exactly
        once, in the host's order (history first when joining).
    @param on_status: called with one sentence when something happened to
        the connection (lost, reconnected and what was fetched).
    @param recent: how many events of history to show on the first join.
    @param policy: backoff policy, C{attempt -> seconds}.
    @param alternative_nicks: when C{nick} is taken, register as
        C{nick_}, C{nick__}, C{nick1} ... C{nick9} instead (the first that
        is free), and take C{nick} back once it is free; when False, a
        taken nick fails L{connect} with L{errors.NickInUse}.
    @param probe_interval: seconds without a line from the host before a
        PING probes the link.
    @param probe_timeout: seconds after the probe before a silent link
        counts as lost (reconnect and catch up as after any drop).
    @param password: the room password of a private room (sent as the
        key of C{JOIN}).
    @param identity: the client's own key (a
        L{chatroom.identity.ClientIdentity}), presented as the TLS client
        certificate: a host that knows it can hand this session the nick
        and rooms of a connection it still holds from before a drop.
    @param take_over: ask the host (L{TAKEOVER_CAPABILITY}) to hand this
        session the nick and rooms of a connection with the same client key
        that it still holds (this session's own, left by a dropped link).
        False for a one-shot command, which must not displace a session
        of the same user that is still running; it registers as C{nick_}
        instead.  A session that another program of the same key took over
        stops asking for the rest of its life, so that two programs never
        take the nick from each other in turn.
    @param hide_own_membership: do not show this session's own C{JOIN},
        C{PART} and C{QUIT} (C{chatroom tail}, which joins only to read:
        its own coming and going is not the room's news).  Other sessions'
        events under the same nick are shown as history.
    @param fanout: how to take multicast delivery when the room offers it
        (L{FanoutOptions}: the interface to join the group on, 127.0.0.1
        by default); C{None}: TLS delivery only.
    @ivar fanout: the L{MulticastDelivery} (its C{mode} says how events
        arrive now), or C{None}.
    @ivar nick: the nick this session has on the host now.
    @ivar wanted_nick: the nick asked for (or last set with
        L{change_nick}).
    """

    def __init__(
        self,
        reactor: Any,
        target: RoomTarget | Announcement,
        nick: str,
        finder: RoomFinder | None = None,
        on_event: Callable[[RoomEvent], None] | None = None,
        on_status: Callable[[str], None] | None = None,
        recent: int = RECENT_HISTORY,
        policy: Callable[[int], float] | None = None,
        clock: Any = None,
        timeout: float = ATTEMPT_TIMEOUT,
        endpoint_for: Callable[[str, PinnedClientCreator], Any] | None = None,
        realname: str = "chatroom user",
        alternative_nicks: bool = True,
        probe_interval: float = PROBE_INTERVAL,
        probe_timeout: float = PROBE_TIMEOUT,
        identity: Any = None,
        password: str | None = None,
        fanout: FanoutOptions | None = FanoutOptions(),
        read_only: bool = False,
        hide_own_membership: bool = False,
        take_over: bool = True,
    ) -> None:
        if isinstance(target, Announcement):
            target = RoomTarget.from_announcement(target)
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.nick = nick
        self.wanted_nick = nick
        self.alternative_nicks = alternative_nicks
        self.probe_interval = probe_interval
        self.identity = identity
        self.password = password
        #: Read the recent history without joining where the host allows
        #: it (a public room), so that the room sees no JOIN and QUIT; a
        #: closed room is joined to be read (C{chatroom tail}).
        self.read_only = read_only
        self.hide_own_membership = hide_own_membership
        self.take_over = take_over
        #: The reason and time of the last "still trying" line.
        self._retry_noted: tuple[str, float] | None = None
        #: The sequence numbers of this session's own C{JOIN}s.
        self._own_joins: set[int] = set()
        self.probe_timeout = probe_timeout
        self._regain_call: Any = None
        self.realname = realname
        self.room = target.room
        self.channel = "#" + target.room
        self.room_key = casefold(target.room)
        self.finder = finder
        self.on_event = on_event or (lambda event: None)
        self.on_status = on_status or (lambda text: None)
        self.recent = recent
        self.timeout = timeout
        self.endpoint_for = endpoint_for or (
            lambda address, creator: tls_endpoint(reactor, address, creator)
        )
        self.machine = ReconnectMachine(self.clock, self, target, policy)
        self.last_seq: int | None = None
        self.protocol: RoomClientProtocol | None = None
        self.address: str | None = None
        self._syncing = False
        self._buffer: list[Message] = []
        self._attempt_d: Deferred | None = None
        self._first: Deferred | None = None
        self._closed: Deferred[None] = Deferred()
        self._unwatch: Callable[[], None] | None = None
        self._closing = False
        self._quit_reason = "Leaving"
        self._outbox: list[_Outgoing] = []
        self._own_nicks = {casefold(nick)}
        # fan-out (issue 10): multicast delivery when the room offers it.
        self.fanout = (
            None
            if fanout is None
            else MulticastDelivery(
                reactor,
                self.clock,
                target.q,
                target.room,
                fanout,
                self._deliver,
                self.on_status,
                lambda: self.last_seq,
            )
        )

    # Public API

    @property
    def joined(self) -> bool:
        """True while in the room and caught up."""
        return self.machine.state is ReconnectState.JOINED

    @property
    def target(self) -> RoomTarget:
        """Where the room is, as far as this session knows."""
        return self.machine.target

    def connect(self) -> Deferred[RoomSession]:
        """Connect, register, join and fetch recent history.

        @return: a Deferred that fires with this session once joined, or
            fails with a L{errors.ClientError} (L{errors.KeyMismatch},
            L{errors.HostUnreachable}, L{errors.NickInUse},
            L{errors.RoomRefused}).  Later drops are handled by
            reconnecting; they do not touch this Deferred.
        """
        if self._first is None:
            self._first = Deferred()
            if self.finder is not None:
                self._unwatch = self.finder.watch(self._directory_changed)
            self.machine.start()
        return self._first

    @property
    def pending(self) -> list[str]:
        """The texts typed and not yet confirmed by the host, in order."""
        return [item.text for item in self._outbox]

    def say(self, text: str) -> Deferred[RoomEvent | None]:
        """Send a message to the room.

        A line longer than the host relays is sent as several messages
        (see L{chatroom.client.split}); each line of a multi-line C{text}
        is a message of its own.  While the session is reconnecting the
        message is kept (L{pending}), shown with C{on_status}, and sent in
        order once the room is joined again; it is never sent twice: a
        message sent just before a drop is looked for in the history
        fetched on return, and only sent again when it is not there.

        @return: a Deferred firing with the (last) message as the host
            ordered it (its L{RoomEvent}, with its sequence number; C{None}
            from a host without C{echo-message}), or failing with
            L{errors.NotConnected} before the first join or after
            L{close}, or L{errors.NotSent} when the pending queue is full,
            the session closed first, or the host refused it.
        """
        return self._post("message", text)

    def action(self, text: str) -> Deferred[RoomEvent | None]:
        """Send an action (C{/me text}); like L{say}."""
        return self._post("action", text)

    def change_nick(self, nick: str) -> Deferred[str]:
        """Change nickname; fires with the new nick or fails with
        L{errors.NickInUse} (or L{errors.ClientError} for a bad nick, or
        L{errors.NotConnected} while reconnecting)."""
        return defer.maybeDeferred(self._change_nick, nick)

    def _change_nick(self, nick: str) -> Deferred[str]:
        proto = self._joined_protocol()
        old = proto.nick
        done = proto.wait_for(
            lambda m: (
                (
                    m.command == "NICK"
                    and casefold((m.prefix or "").partition("!")[0]) == casefold(old)
                )
                or (m.command in ("431", "432", "433", "436"))
            )
        )

        def check(message: Message) -> str:
            if message.command == "433":
                raise errors.NickInUse(nick, errors.alternative_nick(nick))
            if message.command != "NICK":
                raise errors.ClientError(
                    "The host refused the nick %s (%s); choose another."
                    % (nick, message.params[-1])
                )
            self.wanted_nick = message.params[0]
            return message.params[0]

        proto.send("NICK", nick)
        return done.addCallback(check)

    def names(self) -> Deferred[list[str]]:
        """Fires with the nicks in the room (C{@} marks operators), or fails
        with L{errors.NotConnected} while reconnecting."""
        return defer.maybeDeferred(self._names)

    def _names(self) -> Deferred[list[str]]:
        proto = self._joined_protocol()
        collected: list[str] = []

        def matches(message: Message) -> bool:
            if (
                message.command == "353"
                and len(message.params) >= 4
                and casefold(message.params[2]) == casefold(self.channel)
            ):
                collected.extend(message.params[3].split())
            return (
                message.command == "366"
                and len(message.params) > 1
                and casefold(message.params[1]) == casefold(self.channel)
            )

        done = proto.wait_for(matches)
        proto.send("NAMES", self.channel)
        return done.addCallback(lambda _: collected)

    def topic(self, text: str | None = None) -> Deferred[str]:
        """Show the topic (C{text} C{None}) or set it; fires with the topic,
        or fails with L{errors.NotConnected} while reconnecting (or
        L{errors.ClientError} when the host refuses)."""
        return defer.maybeDeferred(self._topic, text)

    def _topic(self, text: str | None) -> Deferred[str]:
        proto = self._joined_protocol()
        if text is not None:
            done = proto.wait_for(
                lambda m: (
                    (
                        m.command == "TOPIC"
                        and m.prefix is not None
                        and casefold(m.prefix.partition("!")[0]) == casefold(proto.nick)
                    )
                    or m.command in ("442", "482")
                )
            )
            proto.send("TOPIC", self.channel, text)
        else:
            done = proto.wait_for(lambda m: m.command in ("331", "332", "442"))
            proto.send("TOPIC", self.channel)

        def read(message: Message) -> str:
            if message.command in ("442", "482"):
                raise errors.ClientError(
                    "The host refused: %s." % (message.params[-1],)
                )
            if message.command == "331":
                return ""
            return message.params[-1]

        return done.addCallback(read)

    def close(self, reason: str = "Leaving") -> Deferred[None]:
        """Leave the room and stop reconnecting; fires once disconnected."""
        self._quit_reason = reason
        self._closing = True
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        self._release()
        self._cancel_regain()
        self.machine.close()
        self._fail_outbox("the session was closed first")
        if self.protocol is None and not self._closed.called:
            self._closed.callback(None)
        if self._first is not None and not self._first.called:
            self._first.errback(
                errors.NotConnected(
                    "The session was closed before it joined %s." % (self.channel,)
                )
            )
            self._first.addErrback(lambda f: None)
        if self.fanout is not None:  # fan-out (issue 10): and its socket
            return self.fanout.close_after(self._closed)
        return self._closed

    # ReconnectActions

    def start_attempt(self, attempt: int, target: RoomTarget) -> None:
        """Start attempt number C{attempt}: every address of C{target} in
        order, then join and catch up; the machine hears how it went."""
        d = self._attempt(attempt, target)
        self._attempt_d = d
        d.addTimeout(self.timeout, self.clock)
        d.addCallbacks(
            lambda result: self._attempt_done(attempt, *result),
            lambda f: self._attempt_error(attempt, f),
        )

    def disconnect(self) -> None:
        """Abandon the current attempt or drop the current connection."""
        attempt, self._attempt_d = self._attempt_d, None
        if attempt is not None and not attempt.called:
            attempt.cancel()
        proto = self.protocol
        if proto is not None and proto.transport is not None:
            if self.machine.state is ReconnectState.CLOSED:
                proto.send("QUIT", self._quit_reason)
                proto.transport.loseConnection()
            else:
                proto.transport.abortConnection()

    def ask_network(self, target: RoomTarget) -> None:
        """Ask for the room's newest announcement (the host may have moved)."""
        if self.finder is not None:
            self.finder.ask(target.room, hashlib.sha256(target.q).digest()[:8])

    def report(self, text: str) -> None:
        """Pass one status line to the user."""
        self.on_status(text)

    # Internals

    def _attempt_done(self, attempt: int, started: float, missed: int) -> None:
        self._retry_noted = None
        if self._attempt_d is not None and self._attempt_d.called:
            self._attempt_d = None
        status = None
        if self.machine.ever_joined:
            lost_at = self.machine.disconnected_at
            waited = self.clock.seconds() - (
                lost_at if lost_at is not None else started
            )
            where = (
                "the host moved to %s, " % (self.address,)
                if self.machine.moved
                else "at %s, " % (self.address,)
            )
            status = (
                "Reconnected to %s (%safter %.0f s): %d missed message%s"
                " fetched, nothing lost."
                % (self.channel, where, waited, missed, "" if missed == 1 else "s")
            )
        self.machine.attempt_succeeded(attempt)
        if self.machine.state is not ReconnectState.JOINED:
            return
        self._hold()
        if status is not None:
            self.on_status(status)
        # Caught up: whatever was in doubt and is not in the history never
        # reached the host; send it (again) now, in order.
        for item in self._outbox:
            item.in_doubt = False
        self._flush_outbox()
        if casefold(self.nick) != casefold(self.wanted_nick) and not self.read_only:
            # A one-shot read (read_only) is gone before the nick could
            # come back: promising it would mean nothing.
            self.on_status(
                "The nick %s is taken on this host; you are %s until it is"
                " free, then you get it back." % (self.wanted_nick, self.nick)
            )
            self._schedule_regain()
        if self._first is not None and not self._first.called:
            self._first.callback(self)

    def _attempt_error(self, attempt: int, failure: Failure) -> None:
        if self._attempt_d is not None and self._attempt_d.called:
            self._attempt_d = None
        error = failure.value
        if failure.check(defer.TimeoutError):
            error = errors.HostUnreachable(
                self.channel,
                self.machine.target.addresses,
                "no answer within %g seconds" % (self.timeout,),
            )
        elif failure.check(CancelledError):
            return
        elif not isinstance(error, errors.ClientError):
            _log.failure("Unexpected error while connecting", failure)
            error = errors.HostUnreachable(
                self.channel, self.machine.target.addresses, str(failure.value)
            )
        was_first = not self.machine.ever_joined
        self.machine.attempt_failed(attempt, str(error))
        if was_first and self._first is not None and not self._first.called:
            self._first.errback(error)
        elif not was_first:
            # The machine retries by itself: say so, not what to do, and
            # not on every attempt (RETRY_NOTE_INTERVAL).
            why = getattr(error, "why", None) or str(error)
            now = self.clock.seconds()
            last = self._retry_noted
            if last is None or last[0] != why or now - last[1] >= RETRY_NOTE_INTERVAL:
                self._retry_noted = (why, now)
                self.on_status(
                    "Could not reconnect to %s yet (%s); still trying."
                    % (self.channel, why)
                )

    @inlineCallbacks
    def _attempt(self, attempt: int, target: RoomTarget):
        started = self.clock.seconds()
        failures: list[errors.ClientError] = []
        proto = None
        for address in target.addresses:
            try:
                proto = yield self._open(address, target)
                break
            except errors.NickInUse:
                raise
            except errors.ClientError as e:
                failures.append(e)
        if proto is None:
            mismatches = [e for e in failures if isinstance(e, errors.KeyMismatch)]
            if mismatches:
                raise mismatches[0]
            raise errors.HostUnreachable(
                self.channel,
                target.addresses,
                "; ".join(str(getattr(e, "why", e)) for e in failures) or "no address",
            )
        try:
            missed = yield self._join_and_catch_up(proto)
        except BaseException:
            if proto.transport is not None:
                proto.transport.abortConnection()
            raise
        return started, missed

    @inlineCallbacks
    def _open(self, address: str, target: RoomTarget):
        creator = PinnedClientCreator(target.q, identity=self.identity)
        listener = _ConnectionListener(self)

        fallbacks = (
            errors.nick_alternatives(self.wanted_nick) if self.alternative_nicks else []
        )

        caps = CLIENT_CAPS
        if self.take_over and self.identity is not None:
            caps += (TAKEOVER_CAPABILITY,)

        def build() -> RoomClientProtocol:
            proto = RoomClientProtocol(
                self.wanted_nick,
                listener,
                wanted_caps=self.fanout.wanted_caps(caps)
                if self.fanout
                else caps,  # fan-out (issue 10)
                realname=self.realname,
                fallback_nicks=fallbacks,
                clock=self.clock,
                probe_interval=self.probe_interval,
                probe_timeout=self.probe_timeout,
            )
            listener.protocol = proto
            return proto

        try:
            endpoint = self.endpoint_for(address, creator)
            proto = yield endpoint.connect(protocol.Factory.forProtocol(build))
        except CancelledError:
            raise
        except Exception as e:
            error = errors.HostUnreachable(self.channel, (address,), _reason_text(e))
            error.why = "%s: %s" % (address, _reason_text(e))
            raise error from None
        self.protocol = proto
        self.address = address
        try:
            yield proto.registered
            self.nick = proto.nick
            self._own_nicks.add(casefold(proto.nick))
        except ProtocolNickInUse:
            raise errors.NickInUse(
                self.wanted_nick, errors.alternative_nick(proto.nick)
            ) from None
        except CancelledError:
            if proto.transport is not None:
                proto.transport.abortConnection()
            raise
        except Exception as e:
            if proto.transport is not None:
                proto.transport.abortConnection()
            if creator.seen_key is not None and creator.seen_key != target.q:
                raise errors.KeyMismatch(
                    self.channel,
                    address,
                    short_fingerprint(target.q),
                    short_fingerprint(creator.seen_key),
                ) from None
            error = errors.HostUnreachable(self.channel, (address,), _reason_text(e))
            error.why = "%s: %s" % (address, _reason_text(e))
            raise error from None
        return proto

    @inlineCallbacks
    def _join_and_catch_up(self, proto: RoomClientProtocol):
        """Join, then fetch history until nothing is missing; returns how
        many messages were fetched that had not been shown."""
        self._syncing = True
        self._buffer = []
        try:
            if self.read_only and self.last_seq is None:
                try:
                    batch = yield proto.history(
                        self.channel, "LATEST", "*", limit=self.recent, strict=True
                    )
                except errors.HistoryRefused:
                    pass  # a closed room: members only, so join to read it
                else:
                    for message in batch:
                        self._deliver(message)
                    return 0
            reply = yield proto.join(self.channel, self.password)
            if reply.command != "366":
                raise errors.RoomRefused(_refusal(self.channel, reply, self.password))
            missed = 0
            if self.last_seq is None:
                # One more when its own JOIN is hidden, so that as many
                # events as asked for are shown.
                extra = 1 if self.hide_own_membership else 0
                batch = yield proto.history(
                    self.channel, "LATEST", "*", limit=self.recent + extra
                )
                if not self._note_own_join(batch) and len(batch) > self.recent:
                    del batch[: len(batch) - self.recent]
                for message in batch:
                    self._deliver(message)
            else:
                while True:
                    before = self.last_seq
                    batch = yield proto.history(
                        self.channel,
                        "AFTER",
                        "msgid=%s:%d" % (self.room_key, self.last_seq),
                        limit=HISTORY_PAGE,
                    )
                    self._note_own_join(batch)
                    for message in batch:
                        event = self._deliver(message)
                        if (
                            event is not None
                            and not event.own
                            and event.kind in ("message", "action", "notice")
                        ):
                            missed += 1
                    if not batch or self.last_seq == before:
                        break
            buffered, self._buffer = self._buffer, []
            for message in buffered:
                self._deliver(message)
            if self.fanout is not None:  # fan-out (issue 10)
                self.fanout.caught_up(proto)
        finally:
            self._syncing = False
            self._buffer = []
        return missed

    def _note_own_join(self, batch: list[Message]) -> bool:
        """Remember the sequence number of this session's C{JOIN}, just
        made: the newest C{JOIN} under its nick in the history fetched
        after it (the nick is the session's alone while it is in the
        room, so no later C{JOIN} can carry it).  Whether there was one.
        """
        for message in reversed(batch):
            event = event_from_message(message, self.channel, self.room_key, self.nick)
            if event is not None and event.kind == "join" and event.own:
                if event.seq is None:
                    return False
                self._own_joins.add(event.seq)
                return True
        return False

    def _is_own_membership(self, event: RoomEvent) -> bool:
        """Whether C{event} is this session's own C{JOIN}, C{PART} or
        C{QUIT}: live ones under its nick, its own C{JOIN}s in history, and
        in history the C{PART}s and C{QUIT}s under its nick after its first
        C{JOIN} (the nick is the session's alone while it is in the room,
        so such a leave is one of its own connections going: the C{QUIT}
        a restarted host records for it)."""
        if not event.own or event.kind not in ("join", "part", "quit"):
            return False
        if not event.replayed or event.seq in self._own_joins:
            return True
        return (
            event.kind != "join"
            and event.seq is not None
            and bool(self._own_joins)
            and event.seq > min(self._own_joins)
        )

    def _deliver(self, message: Message) -> RoomEvent | None:
        event = event_from_message(message, self.channel, self.room_key, self.nick)
        if event is None:
            return None
        if event.seq is not None:
            if self.last_seq is not None and event.seq <= self.last_seq:
                return None  # already shown: history and live overlap
            self.last_seq = event.seq
        if self.hide_own_membership and self._is_own_membership(event):
            return event
        if event.kind == "join" and event.own and event.seq is None:
            # A host handing this session a connection of its own back
            # (session takeover) replays the JOIN without a number; the
            # room saw nothing, and neither does the user.
            return event
        if event.kind == "nick" and event.own:
            self.nick = event.text
            if self.protocol is not None:
                self.protocol.nick = event.text
            self._own_nicks.add(casefold(event.text))
            if casefold(event.text) == casefold(self.wanted_nick):
                self._cancel_regain()
                self.on_status("You are %s again." % (event.text,))
        if (
            event.kind in ("message", "action")
            and any(item.in_doubt for item in self._outbox)
            and casefold(event.sender) in self._own_nicks
        ):
            self._in_doubt_seen(event)
        self.on_event(event)
        if (
            event.kind in ("quit", "part", "kick", "nick")
            and casefold(self.nick) != casefold(self.wanted_nick)
            and casefold(
                event.sender if event.kind != "kick" else event.text.split(" ")[0]
            )
            == casefold(self.wanted_nick)
        ):
            self._regain()
        return event

    # Taking the wanted nick back

    def _regain(self) -> None:
        """Ask for the wanted nick; the host answers with our NICK event
        (handled in L{_deliver}) or 433, which is ignored."""
        if (
            self.joined
            and self.protocol is not None
            and casefold(self.nick) != casefold(self.wanted_nick)
        ):
            self.protocol.send("NICK", self.wanted_nick)

    def _schedule_regain(self) -> None:
        if self._regain_call is None or not self._regain_call.active():
            self._regain_call = self.clock.callLater(REGAIN_INTERVAL, self._regain_tick)

    def _regain_tick(self) -> None:
        self._regain_call = None
        if casefold(self.nick) == casefold(self.wanted_nick) or self._closing:
            return
        self._regain()
        self._schedule_regain()

    def _cancel_regain(self) -> None:
        if self._regain_call is not None and self._regain_call.active():
            self._regain_call.cancel()
        self._regain_call = None

    def _message_received(
        self, proto: RoomClientProtocol | None, message: Message
    ) -> None:
        if proto is not self.protocol:
            return
        if message.command == "ERROR" and self.take_over:
            self._note_taken_over(message)
        taken = (
            self.fanout is not None
            and "batch" not in message.tags
            and self.fanout.message_received(proto, message)
        )  # fan-out
        if not taken and "batch" not in message.tags:
            if self._syncing:
                self._buffer.append(message)
            else:
                self._deliver(message)
        # After delivery: whoever waits on say() sees the message shown.
        label = message.tags.get("label")
        if label is not None and proto is self.protocol:
            self._labeled(proto, label, message)

    def _note_taken_over(self, message: Message) -> None:
        """If the host closes this connection because another program of
        this client key took the session over (L{TAKEOVER_REASON}), stop
        asking to take it back: reconnect under another nick, and get the
        wanted one back once it is free."""
        if message.params and "(%s)" % (TAKEOVER_REASON,) in message.params[-1]:
            self.take_over = False
            self.on_status(
                "Another chatroom program with your key took over %s as %s;"
                " this one goes on under another nick." % (self.channel, self.nick)
            )

    def _connection_lost(
        self, proto: RoomClientProtocol | None, reason: Failure
    ) -> None:
        if proto is not self.protocol:
            return
        self.protocol = None
        self._release()
        for item in self._outbox:
            if item.sent_on is proto:
                item.sent_on, item.label, item.in_doubt = None, None, True
        if self.fanout is not None:  # fan-out (issue 10)
            self.fanout.connection_lost()
        if self._closing or self.machine.state is ReconnectState.CLOSED:
            if not self._closed.called:
                self._closed.callback(None)
            return
        self.machine.connection_lost(_reason_text(reason.value))

    def _joined_protocol(self) -> RoomClientProtocol:
        if not self.joined or self.protocol is None:
            raise errors.NotConnected(
                "Not in %s right now (%s); wait for the reconnection."
                % (self.channel, self.machine.state.value)
            )
        return self.protocol

    # The outbox: what the user typed, until the host confirms it

    def _post(self, kind: str, text: str) -> Deferred[RoomEvent | None]:
        if (
            self._closing
            or not self.machine.ever_joined
            or self.machine.state in (ReconnectState.CLOSED, ReconnectState.FAILED)
        ):
            return defer.fail(
                errors.NotConnected(
                    "Not in %s right now (%s)."
                    % (self.channel, self.machine.state.value)
                )
            )
        pieces = [
            piece
            for line in text.splitlines() or [""]
            for piece in split_text(line, self._text_budget(kind))
        ]
        pieces = [piece for piece in pieces if piece] or [""]
        waiting = sum(1 for item in self._outbox if item.first)
        waiting_bytes = sum(item.size for item in self._outbox)
        size = sum(len(piece.encode("utf-8")) for piece in pieces)
        if waiting + 1 > MAX_PENDING or waiting_bytes + size > MAX_PENDING_BYTES:
            error = errors.NotSent(
                "Not sent to %s: %d messages (%d bytes) are already waiting"
                " for the connection (at most %d, %d bytes); send it again"
                " once reconnected: %s"
                % (
                    self.channel,
                    waiting,
                    waiting_bytes,
                    MAX_PENDING,
                    MAX_PENDING_BYTES,
                    _quote(text),
                )
            )
            self.on_status(str(error))
            return defer.fail(error)
        items = [
            _Outgoing(kind, piece, Deferred(), first=n == 0)
            for n, piece in enumerate(pieces)
        ]
        self._outbox.extend(items)
        if not self.joined:
            self.on_status(
                "Pending until %s is back: %s" % (self.channel, _quote(text))
            )
        self._flush_outbox()
        done = defer.gatherResults([item.done for item in items], consumeErrors=True)

        def last(results: list[RoomEvent | None]) -> RoomEvent | None:
            return results[-1]

        def first_error(failure: Failure) -> Failure:
            failure.trap(defer.FirstError)
            return failure.value.subFailure  # type: ignore[union-attr, no-any-return]

        return done.addCallbacks(last, first_error)

    def _text_budget(self, kind: str) -> int:
        """Bytes of text one line may carry in this room (see L{split})."""
        proto = self.protocol
        linelen = DEFAULT_LINELEN
        source = None
        if proto is not None:
            try:
                linelen = int(proto.isupport.get("LINELEN", DEFAULT_LINELEN))
            except ValueError:
                linelen = DEFAULT_LINELEN
            source = proto.source
        if source is None:
            source = estimated_source(self.nick)
        budget = text_budget(linelen, source, self.channel)
        if kind == "action":
            budget -= ACTION_OVERHEAD
        return max(budget, MIN_BUDGET)

    def _flush_outbox(self) -> None:
        """Send every queued line, in order, if joined."""
        proto = self.protocol
        if not self.joined or proto is None:
            return
        confirmed = {"labeled-response", "echo-message"} <= proto.caps
        for item in list(self._outbox):
            if item.sent_on is not None or item.in_doubt:
                continue
            if not confirmed:
                # A host without echo or labels cannot confirm: sent is done.
                proto.send("PRIVMSG", self.channel, item.wire_text)
                self._outbox.remove(item)
                item.done.callback(None)
                continue
            item.label = proto.next_label()
            item.sent_on = proto
            proto.send(
                "PRIVMSG", self.channel, item.wire_text, tags={"label": item.label}
            )

    def _labeled(self, proto: RoomClientProtocol, label: str, message: Message) -> None:
        """The host's answer to one of our labeled lines."""
        for item in self._outbox:
            if item.label == label and item.sent_on is proto:
                break
        else:
            return
        self._outbox.remove(item)
        if message.command == "PRIVMSG":
            item.done.callback(
                event_from_message(message, self.channel, self.room_key, self.nick)
            )
        elif message.command in ("ACK", "BATCH"):
            item.done.callback(None)
        else:
            error = errors.NotSent(
                "The host did not take the message %r: %s."
                % (item.text, message.params[-1] if message.params else message.command)
            )
            self.on_status(str(error))
            item.done.errback(error)

    def _in_doubt_seen(self, event: RoomEvent) -> None:
        """A message of ours in the history fetched after a drop: it was
        sent before the drop, so it is not sent again."""
        for item in self._outbox:
            if item.in_doubt and item.kind == event.kind and item.text == event.text:
                self._outbox.remove(item)
                item.done.callback(event)
                return

    def _fail_outbox(self, why: str) -> None:
        outbox, self._outbox = self._outbox, []
        for item in outbox:
            error = errors.NotSent(
                "Could not send to %s (%s): %s" % (self.channel, why, _quote(item.text))
            )
            self.on_status(str(error))
            item.done.errback(error)

    def _directory_changed(self, change: DirectoryChange) -> None:
        announcement = change.entry.announcement
        if announcement.key != (self.machine.target.q, self.room):
            return
        if change.outcome in (Outcome.ADDED, Outcome.UPDATED):
            self.machine.announcement_seen(RoomTarget.from_announcement(announcement))
        elif change.outcome is Outcome.REMOVED:
            self.on_status(
                "The host of %s said goodbye; waiting for it to come"
                " back." % (self.channel,)
            )

    def _hold(self) -> None:
        announcement = self.machine.target.announcement
        if self.finder is not None and announcement is not None:
            self.finder.listener.hold(announcement)

    def _release(self) -> None:
        if self.finder is not None:
            self.finder.listener.release(self.machine.target.q, self.room)


def _quote(text: str, limit: int = 80) -> str:
    """C{text} for a status line: its first line, cut to C{limit}
    characters with an ellipsis."""
    first = text.splitlines()[0] if text else ""
    if len(first) > limit or first != text:
        return first[:limit] + "..."
    return first


#: Twisted's connection errors in the words a status line uses, most
#: specific first (their own texts, such as "Connection to the other side
#: was lost in a non-clean fashion", are for programmers).
_PLAIN_REASONS = (
    (twisted_errors.ConnectionDone, "the host closed the connection"),
    (twisted_errors.TCPTimedOutError, "the connection timed out"),
    (twisted_errors.ConnectionLost, "the connection broke"),
    (twisted_errors.ConnectionRefusedError, "connection refused"),
    (twisted_errors.NoRouteError, "no route to the host"),
    (twisted_errors.TimeoutError, "no answer from the host"),
)


def _reason_text(reason: BaseException) -> str:
    """A short human text for a connection error."""
    for kind, text in _PLAIN_REASONS:
        if isinstance(reason, kind):
            return text
    text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    return text.strip().rstrip(".")


def _refusal(channel: str, reply: Message, password: str | None) -> str:
    """The sentence for a host's refusal to let us into C{channel}."""
    said = reply.params[-1]
    if reply.command == "475" and password:
        return (
            "%s is private and the host says the password is wrong (%s);"
            " check --password." % (channel, said)
        )
    if reply.command in ("473", "475"):
        # A private room's refusal says what would let us in: the password,
        # or which key fingerprint to give the host's operator.
        return (
            "The host refused to let you into %s: %s.  If the room has a"
            " password, give it with --password." % (channel, said)
        )
    return (
        "The host refused to let you into %s (%s); check the room name"
        " with 'chatroom rooms'." % (channel, said)
    )
