"""The interfaces that connect the core to its transports and its store."""

from zope.interface import Attribute, Interface


class IRoomMember(Interface):
    """Something that receives a room's events: a TLS connection, a test fake.

    The host calls L{deliver} with bytes that are already formatted for the
    member's L{variant}; members of the same variant share the same bytes.
    """

    nick = Attribute("The member's current nickname.")
    source = Attribute("The member's C{nick!user@host}, used as line prefix.")
    variant = Attribute(
        "Which formatting of events this member needs: a bit set of "
        "chatroom.core.room.MESSAGE_TAGS and chatroom.core.room.SERVER_TIME.")
    echo = Attribute("Whether the member wants its own messages back.")

    def deliver(data):
        """Queue C{data} (bytes, whole lines) for the member."""

    def event_committed(event):
        """An event this member caused has been stored and delivered."""

    def disconnect(reason):
        """Close the member's connection, telling it C{reason}."""


class IHistoryStore(Interface):
    """Where a host keeps its rooms' events."""

    def append(events):
        """Durably store C{events} (a sequence of room events) in one step."""

    def last_seq(room):
        """The highest stored sequence number of C{room}, 0 when none."""
