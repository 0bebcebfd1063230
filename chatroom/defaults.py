"""Default multicast groups, UDP ports and TTLs of discovery and fan-out.

They live apart from L{chatroom.discovery} and L{chatroom.fanout} so that
the host's options and settings can name them without importing either
protocol (a host started with C{--no-discovery} never loads discovery).
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
