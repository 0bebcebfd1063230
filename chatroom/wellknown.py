"""Well-known names and numbers of discovery and fan-out: the default
multicast groups, UDP ports and TTLs, the fan-out capability, and the
capability by which a client resumes its own session.

They live apart from L{chatroom.discovery} and L{chatroom.fanout} so that
the host's options, settings and command table can name them without
importing either protocol: a host started with C{--no-discovery} never
loads discovery, one without C{--fanout} never loads fan-out.
"""

DISCOVERY_GROUP = "239.255.67.82"
"""Default discovery group: IPv4 organization-local scope (RFC 2365);
67.82 is ASCII "CR"."""

DISCOVERY_PORT = 47667
"""Default discovery UDP port."""

DISCOVERY_TTL = 8
"""Default multicast TTL (router hops) for announcements and goodbyes."""

FANOUT_GROUP = "239.255.67.70"
"""Default fan-out group (docs/protocol-fanout.rst, "Transport")."""

FANOUT_PORT = 47668
"""Default fan-out UDP port."""

FANOUT_TTL = 8
"""Default multicast TTL (router hops) of fan-out datagrams."""

FANOUT_CAPABILITY = "chatroom.invalid/fanout"
"""The vendor capability a member requests to be offered multicast
delivery (docs/protocol-fanout.rst, "Capability")."""

FANOUT_REQUIRED_CAPABILITIES = frozenset(
    {"message-tags", "server-time", "echo-message"}
)
"""Capabilities a member must have (or request with it) to take fan-out:
a datagram carries each event as such a member gets it over TLS."""

TAKEOVER_CAPABILITY = "chatroom.invalid/takeover"
"""The vendor capability a client requests to take over a connection of
its own that the host still holds (the same client key, a ghost left by a
dropped link): the new connection gets that one's nick and rooms at once
(docs/protocol-room.rst, "Session takeover").  A client that does not
request it (a second program of the same user, a one-shot C{chatroom
say}) never displaces a connection."""

TAKEOVER_REASON = "Replaced by a new connection with the same client key"
"""What a connection taken over by L{TAKEOVER_CAPABILITY} is told, in its
C{ERROR :Closing link: ADDRESS (REASON)}: a client that reads it knows
another program of its own holds the session now, and does not take it
back (docs/protocol-room.rst, "Session takeover")."""
