"""The interfaces that connect the core to its transports and its store."""

from zope.interface import Attribute, Interface


class IRoomMember(Interface):
    """Something that receives a room's events: a TLS connection, a test fake.

    This is exactly what L{chatroom.host.RoomHost} uses of a member.  The
    host calls L{deliver} with bytes that are already formatted for the
    member's L{variant}; members of the same variant share the same bytes.
    The member's own events caused by a labelled command go to that
    command's L{chatroom.reply.Reply} instead, which owns label and echo.
    """

    nick = Attribute("The member's current nickname.")
    source = Attribute("The member's C{nick!user@host}, used as line prefix.")
    variant = Attribute(
        "Which formatting of events this member needs: a bit set of "
        "chatroom.core.room.MESSAGE_TAGS and chatroom.core.room.SERVER_TIME."
    )
    echo = Attribute("Whether the member wants its own messages back.")
    caps = Attribute(
        "The IRCv3 capabilities the member negotiated (a set of names); "
        "the host sends AWAY and SETNAME only to members with the cap."
    )
    monitoring = Attribute(
        "The nicks the member monitors (IRCv3 MONITOR): a dict from the "
        "folded nick to the nick as given; changed only by the host."
    )

    def deliver(data):
        """Queue C{data} (bytes, whole lines) for the member."""

    def disconnect(reason):
        """Close the member's connection, telling it C{reason}."""


class IHistoryStore(Interface):
    """Where a host keeps its rooms' events and state (see
    L{chatroom.history.HistoryStore}, the SQLite implementation)."""

    def append(events):
        """Durably store C{events} (a sequence of room events) in one step."""

    def last_seq(room):
        """The highest stored sequence number of C{room}, 0 when none."""

    def present(room):
        """The sources the stored history of C{room} shows in it, in the
        order they joined (left over after a crash)."""

    def between(room, after, before, limit, newest, messages_only):
        """Stored events with C{after < seq < before}, oldest first."""

    def seq_at(room, time_ms, after):
        """A sequence position for a time, for history ranges."""

    def add_room(key, name, opened, now_ms):
        """Remember a room (again) as hosted."""

    def room_record(key):
        """A room's stored topic, modes and whether a user opened it."""

    def set_modes(key, modes, channel_key, member_limit=0, bans=()):
        """Record a room's modes, key, member limit and ban list."""

    def opened_rooms():
        """Names of the hosted rooms that users opened."""

    def last_event_ms(key):
        """When a room last had an event."""

    def remove_room(key):
        """Stop hosting a room, keeping its numbering."""
