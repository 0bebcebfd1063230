# -*- test-case-name: tests.test_ircserver -*-
"""The room host: rooms, membership, nicknames and the per-turn commit step.

The host is the one owner of membership: L{RoomHost.join}, L{RoomHost.part},
L{RoomHost.kick} and L{RoomHost.quit} change a room's members (the pure
sequencer, L{chatroom.core.room.Room}) and the member's rooms together, and
queue the resulting L{Delivery} with L{RoomHost.submit}.  Once per reactor turn the host commits every pending
event to the history store in one transaction and only then delivers them,
so no member is ever shown an event that a crash could lose.  Delivery is
shaped for speed: consecutive events with the same audience are formatted
once per capability variant and joined, so each member gets one write per
turn whatever the number of events.
"""

from __future__ import annotations

import collections
import secrets
from typing import Any, Iterable

import attrs
from twisted.internet import defer
from twisted.logger import Logger

from chatroom.core.addresses import address_key
from chatroom.core.ircline import format_line
from chatroom.core.names import casefold
from chatroom.core.room import POST_COMMANDS, Ban, Delivery, Event, Room
from chatroom.core.tokenbucket import TokenBucket
from chatroom.timerqueue import TimerQueue


#: The reason of the C{QUIT} recorded, when a room is opened, for members
#: the history shows present: the host before was killed (C{kill -9}, a
#: power cut) and never recorded their leaving.
RESTART_REASON = "Host restarted"


@attrs.frozen
class Limits:
    """Every limit of the IRC side of a host, with LIMITS.md's defaults.

    Times are in seconds, sizes in bytes.
    """

    handshake_timeout: float = 10.0
    registration_timeout: float = 30.0
    ping_after: float = 90.0
    close_after: float = 150.0
    pre_registration_bytes: int = 4096
    pre_registration_lines: int = 64
    flood_burst: int = 5
    #: Commands per second after the burst; 0 turns flood control off.
    flood_rate: float = 2.0
    flood_max_delayed: int = 8192
    #: Bytes held for a member whose connection stopped taking them.
    sendq_hard: int = 96 * 1024
    max_per_address: int = 5
    new_per_minute: int = 8
    new_refill_per_minute: int = 4
    max_clients: int = 256
    #: Seconds an address that flooded before registering is refused.
    throttle_seconds: float = 60.0
    history_limit: int = 100
    #: Let users open rooms by joining them (C{--open-rooms}).
    open_rooms: bool = False
    #: Most rooms the host serves, fixed and opened together.
    max_rooms: int = 100
    #: Most rooms one connection may open per hour.
    opened_per_hour: int = 5
    #: Longest room name, without the C{#}.
    room_name_length: int = 32
    #: An opened room with no event for this long, and nobody in it, is
    #: removed.
    room_idle_seconds: float = 30 * 86400.0
    #: Gone nicks remembered for C{WHOWAS}, newest first (Ergo keeps 100).
    whowas_entries: int = 100
    #: Nicks one connection may C{MONITOR} (C{MONITOR=} in ISUPPORT; Ergo's
    #: default is 100).
    monitor_entries: int = 100


@attrs.frozen
class GoneUser:
    """Who used a nick that is gone (quit or renamed), for C{WHOWAS}.

    @ivar time_ms: when it went, in milliseconds since the epoch.
    """

    nick: str
    user: str
    address: str
    realname: str
    time_ms: int


class RoomHost:
    """Everything a host's connections share: rooms, nicks, the store.

    @param store: an L{IHistoryStore} (normally L{chatroom.history.HistoryStore}).
    @param clock: an L{IReactorTime}; the flush runs at C{callLater(0)}.
    @param server_name: the name the host uses as prefix of its replies.
    @param rooms: the names of the rooms to host.
    @param operators: server operators' names and passwords, for C{OPER}.
    """

    log = Logger()

    def __init__(
        self,
        store: Any,
        clock: Any,
        server_name: str,
        rooms: Iterable[str],
        limits: Limits = Limits(),
        motd: Iterable[str] = (),
        observer: Any = None,
        operators: dict[str, str] | None = None,
    ) -> None:
        self.store = store
        #: Server operators' names and passwords (C{OPER}), from the
        #: host's configuration.
        self.operators = dict(operators or {})
        self.clock = clock
        self.server_name = server_name
        self.limits = limits
        self.motd = list(motd)
        self.created_ms = self.now_ms()
        self.rooms: dict[str, Room] = {}
        self.nicks: dict[str, Any] = {}
        #: The rooms of each member, by room key: the other side of each
        #: room's members, changed only by the membership methods below.
        self._rooms_of: dict[Any, dict[str, Room]] = {}
        self.clients = 0
        #: The most registered users there have been at once (C{265}).
        self.most_users = 0
        #: Who monitors each (folded) nick (IRCv3 MONITOR).
        self._watchers: dict[str, set[Any]] = {}
        #: Recently gone nicks, newest last (L{whowas}); bounded.
        self._gone: collections.deque[GoneUser] = collections.deque(
            maxlen=limits.whowas_entries
        )
        #: Every admitted connection (registered or not).
        self.connections: set[Any] = set()
        #: The connections' deadlines, one timer for all.
        self.timers = TimerQueue(clock)
        self._per_address: dict[str, int] = {}
        self._new_connections: dict[str, TokenBucket] = {}
        self._throttled: dict[str, float] = {}
        self._pending: list[Delivery] = []
        # msgids of unnumbered messages: unique per host run, never of the
        # ROOM:SEQ form (no colon).
        self._msgid_prefix = "p" + secrets.token_hex(4) + "-"
        self._msgids = 0
        self._flush_call: Any = None
        #: Counters an operator can read: refused input, dropped clients...
        self.counters: dict[str, int] = {}
        #: Told when users open rooms and when idle ones are removed.
        self.observer = observer
        #: Multicast fan-out (a L{chatroom.fanout.HostFanout}), or C{None}
        #: when the host does not offer it.
        self.fanout: Any = None
        for name in rooms:
            self.add_room(name)
        if limits.open_rooms:
            for name in store.opened_rooms():
                self.add_room(name)

    # Rooms and nicks

    def add_room(self, name: str, opened: bool = False) -> Room:
        """Host room C{name}, continuing its stored history, topic, modes."""
        key = casefold(name)
        room = self.rooms.get(key)
        if room is None:
            self.store.add_room(key, name, opened, self.now_ms())
            record = self.store.room_record(key)
            room = Room(
                name,
                next_seq=self.store.last_seq(key) + 1,
                topic=record.topic,
                opened=record.opened,
                modes=record.modes,
                channel_key=record.channel_key,
                created_ms=record.created_ms,
                limit=record.member_limit,
                bans=[Ban(*ban) for ban in record.bans],
            )
            self.rooms[key] = room
            self._record_gone(room)
        return room

    def _record_gone(self, room: Room) -> None:
        """Queue a C{QUIT} (L{RESTART_REASON}) for everyone the stored
        history still shows in C{room}: the previous host was killed before
        it could record their leaving.  Queued before anything else can
        happen in the room, and committed with the turn's other events,
        which also clears them from the store's present members."""
        now = self.now_ms()
        for source in self.store.present(room.key):
            self.submit(room.gone(source, RESTART_REASON, now))

    def open_room(self, name: str) -> Room:
        """A user opens room C{name}: host it, remember it, announce it.

        The caller has checked L{can_open_room}.
        """
        room = self.add_room(name, opened=True)
        self.count("rooms-opened")
        if self.observer is not None:
            self.observer.room_opened(room)
        return room

    def can_open_room(self) -> bool:
        """Whether users may open one more room here."""
        return self.limits.open_rooms and len(self.rooms) < self.limits.max_rooms

    def save_modes(self, room: Room) -> None:
        """Record C{room}'s modes so they survive a restart."""
        self.store.set_modes(
            room.key,
            "".join(sorted(room.modes)),
            room.channel_key,
            room.limit,
            [(b.mask, b.setter, b.time_ms) for b in room.bans],
        )

    def remove_idle_rooms(self) -> list[Room]:
        """Stop hosting opened rooms that are empty and idle too long."""
        self.flush()
        cutoff = self.now_ms() - int(self.limits.room_idle_seconds * 1000)
        removed = []
        for room in list(self.rooms.values()):
            if not room.opened or len(room):
                continue
            if max(self.store.last_event_ms(room.key), room.created_ms) >= cutoff:
                continue
            del self.rooms[room.key]
            self.store.remove_room(room.key)
            removed.append(room)
            if self.observer is not None:
                self.observer.room_removed(room)
        return removed

    def find_room(self, channel: str) -> Room | None:
        """The room named by C{channel} (C{#name}), or C{None}."""
        if not channel.startswith("#"):
            return None
        return self.rooms.get(casefold(channel[1:]))

    def new_msgid(self) -> str:
        """A C{msgid} for an event that has no sequence number."""
        self._msgids += 1
        return self._msgid_prefix + str(self._msgids)

    def count(self, name: str) -> None:
        """Add one to counter C{name}."""
        self.counters[name] = self.counters.get(name, 0) + 1

    def now_ms(self) -> int:
        """The host clock in milliseconds since the epoch."""
        return int(self.clock.seconds() * 1000)

    # Connection accounting

    def admit(self, address: str) -> str | None:
        """Count a new connection from C{address}; say why it is refused.

        @return: C{None} to accept, or the reason for the C{ERROR} line.
            An accepted connection must later be passed to L{release}.
        """
        if self.clients >= self.limits.max_clients:
            self.count("refused-max-clients")
            return "Too many clients on this host, try again later"
        group = address_key(address)
        if group is not None:  # loopback and local sockets are exempt
            until = self._throttled.get(group)
            if until is not None:
                if self.clock.seconds() < until:
                    self.count("refused-throttled")
                    return "Your address is throttled, try again later"
                del self._throttled[group]
            if self._per_address.get(group, 0) >= self.limits.max_per_address:
                self.count("refused-per-address")
                return "Too many connections from your address"
            bucket = self._new_connections.get(group)
            if bucket is None:
                bucket = self._new_connections[group] = TokenBucket(
                    self.limits.new_per_minute, self.limits.new_refill_per_minute / 60.0
                )
            if not bucket.take(self.clock.seconds()):
                self.count("refused-connect-rate")
                return "Too many new connections from your address"
            if len(self._new_connections) > 4096:
                self._forget_full_buckets()
            self._per_address[group] = self._per_address.get(group, 0) + 1
        self.clients += 1
        return None

    def throttle(self, address: str) -> None:
        """Refuse new connections from C{address} for a while (it flooded).

        Loopback is never throttled, like every per-address limit.
        """
        group = address_key(address)
        if group is None:
            return
        if len(self._throttled) > 4096:
            now = self.clock.seconds()
            self._throttled = {g: t for g, t in self._throttled.items() if t > now}
        self._throttled[group] = self.clock.seconds() + self.limits.throttle_seconds

    def _forget_full_buckets(self) -> None:
        now = self.clock.seconds()
        for group, bucket in list(self._new_connections.items()):
            if bucket.is_full(now):
                del self._new_connections[group]

    def release(self, address: str) -> None:
        """Forget a connection counted by L{admit}."""
        self.clients -= 1
        group = address_key(address)
        if group is None:
            return
        left = self._per_address[group] - 1
        if left:
            self._per_address[group] = left
        else:
            del self._per_address[group]

    def nick_owner(self, nick: str) -> Any:
        """The connection using C{nick}, or C{None}."""
        return self.nicks.get(casefold(nick))

    def claim_nick(self, member: Any, old: str | None, new: str) -> None:
        """Record that C{member} now uses C{new} instead of C{old}."""
        if old is not None and self.nicks.get(casefold(old)) is member:
            del self.nicks[casefold(old)]
        self.nicks[casefold(new)] = member
        self.most_users = max(self.most_users, len(self.nicks))

    def users(self) -> int:
        """How many registered users the host has now."""
        return len(self.nicks)

    def _remember_gone(self, member: Any) -> None:
        if member.nick is not None and member.user is not None:
            self._gone.append(
                GoneUser(
                    member.nick,
                    member.user,
                    member.address,
                    member.realname,
                    self.now_ms(),
                )
            )

    def whowas(self, nick: str, count: int) -> list[GoneUser]:
        """Up to C{count} (0: all) remembered users of C{nick}, newest first."""
        folded = casefold(nick)
        found = [gone for gone in reversed(self._gone) if casefold(gone.nick) == folded]
        return found[:count] if count > 0 else found

    # Membership: the one place where both sides change together

    def rooms_of(self, member: Any) -> list[Room]:
        """The rooms C{member} is in, in the order it joined them."""
        return list(self._rooms_of.get(member, {}).values())

    def join(self, member: Any, room: Room, reply: Any = None) -> Delivery:
        """Put C{member} in C{room}; the C{JOIN} goes to everyone in it.

        The caller has checked L{Room.join_refusal}.
        """
        delivery = room.join(member, self.now_ms())
        self._rooms_of.setdefault(member, {})[room.key] = room
        self.submit(delivery, reply)
        return delivery

    def part(
        self, member: Any, room: Room, reason: str | None, reply: Any = None
    ) -> Delivery:
        """C{member} leaves C{room}.

        @raise NotAMember: if C{member} is not in C{room}.
        """
        delivery = room.leave(member, "PART", reason, self.now_ms())
        self._forget(member, room, delivery)
        self.submit(delivery, reply)
        return delivery

    def kick(
        self, operator: Any, room: Room, target: Any, reason: str, reply: Any = None
    ) -> Delivery:
        """Operator C{operator} removes C{target} from C{room}.

        @raise NotOperator: if C{operator} is not one of the room's operators.
        @raise NotAMember: if C{operator} or C{target} is not in the room.
        """
        delivery = room.kick(operator, target, reason, self.now_ms())
        self._forget(target, room, delivery)
        self.submit(delivery, reply)
        return delivery

    def quit(self, member: Any, reason: str) -> None:
        """C{member} disconnected: it leaves every room, its nick is free.

        Everyone who shared a room with it is sent one C{QUIT} line, which
        is stored once per room.
        """
        if member.nick is not None and self.nicks.get(casefold(member.nick)) is member:
            del self.nicks[casefold(member.nick)]
            self._remember_gone(member)
            self.tell_watchers(member, member.nick, online=False)
        self.unwatch_all(member)
        told = {member}
        now = self.now_ms()
        for room in self._rooms_of.pop(member, {}).values():
            delivery = room.leave(member, "QUIT", reason, now)
            delivery.audience = tuple(m for m in delivery.audience if m not in told)
            delivery.origin = None
            told.update(delivery.audience)
            if self.fanout is not None:
                self.fanout.member_left(member, room, delivery)
            self.submit(delivery)

    def take_over(self, ghost: Any, member: Any, reason: str) -> list[Room]:
        """C{member}, a new connection of the client that C{ghost} belonged
        to, takes C{ghost}'s nick and its place in every room at once; the
        ghost is closed with C{reason} and leaves no C{QUIT} behind.

        @return: the rooms C{member} is now in.
        """
        rooms = self._rooms_of.pop(ghost, {})
        for room in rooms.values():
            if self.fanout is not None:
                # The ghost's key must not read what follows; the new
                # connection asks for its own.
                self.fanout.forget(ghost, room)
            room.replace(ghost, member)
        if rooms:
            self._rooms_of[member] = rooms
        if ghost.nick is not None and self.nicks.get(casefold(ghost.nick)) is ghost:
            del self.nicks[casefold(ghost.nick)]
        self.count("ghosts-taken-over")
        ghost.disconnect(reason)
        return list(rooms.values())

    def _forget(self, member: Any, room: Room, delivery: Delivery) -> None:
        if self.fanout is not None:
            self.fanout.member_left(member, room, delivery)
        rooms = self._rooms_of.get(member)
        if rooms is not None:
            rooms.pop(room.key, None)
            if not rooms:
                del self._rooms_of[member]

    def relay(
        self,
        member: Any,
        command: str,
        params: tuple[str, ...],
        audience: tuple[Any, ...],
        reply: Any = None,
        origin: Any = None,
        client_tags: dict[str, str] | None = None,
        message: bool = False,
    ) -> Delivery | None:
        """Send C{member}'s line to C{audience} without a sequence number:
        relayed at the end of the turn, in order with the room events, but
        neither numbered nor stored (C{NICK}, C{AWAY}, C{INVITE} notices,
        C{WALLOPS}, C{TAGMSG}...).

        @param message: a message (private, to a status prefix, C{TAGMSG}):
            it carries its own C{msgid} (IRCv3 message-ids) and the bot flag.
        @return: the delivery, or C{None} when the audience is empty.
        """
        if not audience:
            return None
        delivery = Delivery(
            Event(
                room=None,
                seq=None,
                time_ms=self.now_ms(),
                command=command,
                source=member.source,
                params=params,
                client_tags=client_tags,
                unsequenced_id=self.new_msgid() if message else None,
                bot=member.bot if message else False,
            ),
            audience,
            origin=origin,
        )
        self.submit(delivery, reply)
        return delivery

    def change_nick(self, member: Any, new: str, reply: Any = None) -> Delivery:
        """C{member} is now called C{new}: everyone who shares a room with
        it (and itself) sees the C{NICK} line.  The caller has set the
        member's new nick and source after this call."""
        delivery = Delivery(
            Event(
                room=None,
                seq=None,
                time_ms=self.now_ms(),
                command="NICK",
                source=member.source,
                params=(new,),
            ),
            self.shared_audience(member),
            origin=member,
        )
        self._remember_gone(member)
        self.claim_nick(member, member.nick, new)
        self.submit(delivery, reply)
        return delivery

    # MONITOR (IRCv3): who is told when a nick comes and goes

    def watch(self, member: Any, nick: str) -> bool:
        """C{member} monitors C{nick}; C{False} when its list is full."""
        folded = casefold(nick)
        if folded in member.monitoring:
            return True
        if len(member.monitoring) >= self.limits.monitor_entries:
            return False
        member.monitoring[folded] = nick
        self._watchers.setdefault(folded, set()).add(member)
        return True

    def unwatch(self, member: Any, nick: str) -> None:
        """C{member} stops monitoring C{nick}."""
        folded = casefold(nick)
        if member.monitoring.pop(folded, None) is not None:
            watchers = self._watchers[folded]
            watchers.discard(member)
            if not watchers:
                del self._watchers[folded]

    def unwatch_all(self, member: Any) -> None:
        """C{member} monitors nothing any more (C{MONITOR C}, or it left)."""
        for nick in list(getattr(member, "monitoring", {}).values()):
            self.unwatch(member, nick)

    def watchers(self, nick: str) -> set[Any]:
        """The members monitoring C{nick}."""
        return self._watchers.get(casefold(nick), set())

    def tell_watchers(self, member: Any, nick: str, online: bool) -> None:
        """C{nick} (used by C{member}) came online (C{730 :nick!user@host})
        or went offline (C{731 :nick}): tell whoever monitors it."""
        for watcher in self.watchers(nick):
            watcher.deliver(
                format_line(
                    "730" if online else "731",
                    watcher.nick or "*",
                    member.source if online else nick,
                    prefix=self.server_name,
                )
            )

    def tell_peers(
        self,
        member: Any,
        command: str,
        params: tuple[str, ...],
        cap: str,
        reply: Any = None,
    ) -> None:
        """Send C{:member command params} to everyone who shares a room with
        C{member} and negotiated C{cap} (C{AWAY} with C{away-notify},
        C{SETNAME} with C{setname}), and to those monitoring it with
        C{extended-monitor} and C{cap}; C{member} itself is not sent it."""
        audience = tuple(
            other
            for other in self.shared_audience(member)
            if other is not member and cap in other.caps
        )
        if member.nick is not None:
            audience += tuple(
                other
                for other in self.watchers(member.nick)
                if other not in audience
                and other is not member
                and cap in other.caps
                and "extended-monitor" in other.caps
            )
        self.relay(member, command, params, audience, reply, origin=member)

    def shared_audience(self, member: Any) -> tuple[Any, ...]:
        """Everyone who shares a room with C{member}, and C{member}."""
        seen = {member: None}
        for room in self._rooms_of.get(member, {}).values():
            for other in room.members:
                seen[other] = None
        return tuple(seen)

    # Commit, then deliver

    def submit(self, delivery: Delivery, reply: Any = None) -> None:
        """Queue C{delivery}; it is stored and delivered at the end of the
        turn.  C{reply}, the L{chatroom.reply.Reply} of the command that
        caused it, is told once it is."""
        if reply is not None:
            reply.expect(delivery)
        self._pending.append(delivery)
        if self._flush_call is None:
            self._flush_call = self.clock.callLater(0, self.flush)

    def flush(self) -> None:
        """Commit every pending event in one transaction, then deliver them."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        deliveries, self._pending = self._pending, []
        if not deliveries:
            return
        try:
            self.store.append([delivery.event for delivery in deliveries])
        except Exception:
            # Not stored means not shown: nobody sees these events, and their
            # sequence numbers are skipped, never reused.
            self.log.failure(
                "Could not store {count} events; not delivering", count=len(deliveries)
            )
            self.count("store-failures")
            for delivery in deliveries:
                if delivery.reply is not None:
                    delivery.reply.committed(delivery, stored=False)
            return
        self._deliver(deliveries)

    def _deliver(self, deliveries: list[Delivery]) -> None:
        # A member whose own event went into a labelled reply is sent what
        # follows it only after that reply (Reply.write_after), so that it
        # sees the room's order: member -> the reply holding its last echo.
        held: dict[Any, Any] = {}
        start = 0
        while start < len(deliveries):
            audience = deliveries[start].audience
            end = start + 1
            while end < len(deliveries) and deliveries[end].audience is audience:
                end += 1
            run = deliveries[start:end]
            _deliver_run(run, audience, held)
            for delivery in run:
                reply = delivery.reply
                if reply is not None:
                    origin = delivery.origin
                    if (
                        reply.holds_echo
                        and origin is not None
                        and origin.echo
                        and origin not in audience
                    ):
                        # A member on multicast delivery still gets the
                        # labelled answer to its own command over its
                        # connection, echo included (protocol-fanout.rst).
                        reply.echo(delivery.event.line(origin.variant), delivery)
                    reply.committed(delivery)
            start = end
        if self.fanout is not None:
            self.fanout.turn(deliveries)

    def close_all(self, reason: str, grace: float = 5.0) -> defer.Deferred:
        """Tell every client C{reason} and close; fires once all are gone.

        Connections that have not closed after C{grace} seconds (a peer
        that stopped reading) are aborted.
        """
        connections = list(self.connections)
        lost = defer.gatherResults([c.when_lost() for c in connections])
        for connection in connections:
            connection.disconnect(reason)
        if not connections:
            return lost
        deadline = self.clock.callLater(
            grace, lambda: [c.abort() for c in list(self.connections)]
        )

        def done(result: Any) -> Any:
            if deadline.active():
                deadline.cancel()
            return result

        return lost.addBoth(done)

    def stop(self) -> None:
        """Flush what is pending; called when the service stops."""
        self.flush()


def _deliver_run(
    run: list[Delivery], audience: tuple[Any, ...], held: dict[Any, Any]
) -> None:
    """Deliver events that share one audience: one write per member.

    Each variant's lines are formatted once for the whole run; members who
    caused none of its events get the same joined bytes, and each member
    who caused some gets the run minus, or with the reply's place for, its
    own events (L{_deliver_to_origin}).  C{held} maps a member to the
    labelled reply its output of this turn waits behind.
    """
    own: dict[Any, list[int]] = {}
    for index, delivery in enumerate(run):
        if delivery.origin is not None:
            own.setdefault(delivery.origin, []).append(index)
    lines_of: dict[int, list[bytes]] = {}
    shared: dict[int, bytes] = {}
    for member in audience:
        variant = member.variant
        positions = own.get(member)
        if positions is not None:
            lines = lines_of.get(variant)
            if lines is None:
                lines = lines_of[variant] = [d.event.line(variant) for d in run]
            _deliver_to_origin(run, lines, positions, member, held)
            continue
        data = shared.get(variant)
        if data is None:
            lines = lines_of.get(variant)
            if lines is None:
                lines = lines_of[variant] = [d.event.line(variant) for d in run]
            data = shared[variant] = b"".join(lines)
        if data:
            if held and member in held:
                held[member].write_after(data)
            else:
                member.deliver(data)


def _deliver_to_origin(
    run: list[Delivery],
    lines: list[bytes],
    positions: list[int],
    member: Any,
    held: dict[Any, Any],
) -> None:
    """Deliver a run to a member who caused some of its events.

    C{lines} are the run's lines for the member's variant, and C{positions}
    the indexes of the events it caused.  Its own messages come back only
    with C{echo-message}.  Its own events caused by a labelled command go
    to that command's reply, which owns the label and is written once the
    command's events are stored; what follows such an event waits behind
    the reply (C{held}), so every line keeps its place in the room's order.
    """
    pieces: list[bytes] = []
    start = 0
    for index in positions:
        delivery = run[index]
        if delivery.event.command in POST_COMMANDS and not member.echo:
            pieces.append(b"".join(lines[start:index]))
            start = index + 1
        elif delivery.reply is not None and delivery.reply.holds_echo:
            pieces.append(b"".join(lines[start:index]))
            start = index + 1
            _send(member, b"".join(pieces), held)
            pieces = []
            delivery.reply.echo(lines[index], delivery)
            held[member] = delivery.reply
    pieces.append(b"".join(lines[start:]))
    _send(member, b"".join(pieces), held)


def _send(member: Any, data: bytes, held: dict[Any, Any]) -> None:
    """Deliver C{data} to C{member} now, or after the reply it waits behind."""
    if not data:
        return
    reply = held.get(member)
    if reply is None:
        member.deliver(data)
    else:
        reply.write_after(data)
