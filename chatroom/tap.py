# -*- test-case-name: tests.test_tap -*-
"""C{twistd chatroom}: the options of a room host and L{makeService}."""

from __future__ import annotations

import ipaddress
import os
import sys

from twisted.python import usage

from chatroom.discovery import DEFAULT_ANNOUNCE_TTL, DEFAULT_GROUP, DEFAULT_PORT
from chatroom.errors import ChatroomError, DataDirectoryError
from chatroom.host import Limits


def default_data_dir() -> str:
    """C{$XDG_DATA_HOME/chatroom}, or C{~/.local/share/chatroom}."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "chatroom")


def _at_least_zero(kind: type, name: str):
    """An option converter: a number of C{kind} (int or float), 0 or more."""
    noun = "a whole number" if kind is int else "a number"

    def convert(value: str):
        try:
            number = kind(value)
        except ValueError:
            number = -1
        if not number >= 0:  # also refuses float("nan")
            raise ValueError("%s must be %s, 0 or more" % (name, noun))
        return number
    convert.coerceDoc = noun.capitalize() + ", 0 or more."  # type: ignore[attr-defined]
    return convert


def _positive_int(name: str):
    return _at_least_zero(int, name)


def _positive_float(name: str):
    return _at_least_zero(float, name)


class Options(usage.Options):
    """Options of C{twistd chatroom}."""

    synopsis = "[options]"
    longdesc = (
        "Host IRC-compatible chat rooms. Each --room NAME is the channel "
        "#NAME. Clients connect with TLS (the certificate is bound to the "
        "host key printed at start) and speak IRC with IRCv3 capabilities.")

    optParameters = [
        ["data-dir", "d", None,
         "Directory for the host key and the history database "
         "[default: $XDG_DATA_HOME/chatroom or ~/.local/share/chatroom]."],
        ["port", "p", 6697,
         "TCP port of the TLS listener (0: any free port, logged at start).",
         _positive_int("--port")],
        ["interface", "i", "",
         "Address the TLS listener binds to [default: all IPv4 addresses; "
         "'::' for IPv6]."],
        ["server-name", None, None,
         "Name the host uses in its replies [default: FINGERPRINT.chatroom]."],
        ["motd-file", None, None, "A text file shown as message of the day."],
        ["oper-file", None, None,
         "Server operators for OPER: a file of 'name password' lines, "
         "readable by its owner only (mode 0600)."],
        ["history-keep", None, 0,
         "Keep at most this many events per room (0: no limit).",
         _positive_int("--history-keep")],
        ["history-days", None, 0,
         "Delete events older than this many days (0: keep forever).",
         _positive_float("--history-days")],
        ["max-clients", None, 256, "Most clients connected at once.",
         _positive_int("--max-clients")],
        ["max-per-address", None, 5,
         "Most connections at once from one address (loopback exempt).",
         _positive_int("--max-per-address")],
        ["flood-burst", None, 5, "Commands a client may send at once.",
         _positive_int("--flood-burst")],
        ["max-rooms", None, 100,
         "Most rooms this host serves, fixed and opened together.",
         _positive_int("--max-rooms")],
        ["max-opened-per-hour", None, 5,
         "Most rooms one connection may open per hour.",
         _positive_int("--max-opened-per-hour")],
        ["max-room-name-length", None, 32, "Longest room name, without the '#'.",
         _positive_int("--max-room-name-length")],
        ["room-idle-days", None, 30.0,
         "Remove a room users opened after this many days without an event "
         "(while nobody is in it).", _positive_float("--room-idle-days")],
        ["flood-rate", None, 2.0,
         "Commands per second after the burst; excess is delayed "
         "(0: no flood control).", _positive_float("--flood-rate")],
    ]

    optFlags = [
        ["no-discovery", None, "Do not announce rooms on the network."],
        ["open-rooms", None,
         "Let users open rooms: joining an unknown room creates it, and its "
         "creator becomes its operator."],
    ]

    optParameters += [
        ["discovery-interface", None, "127.0.0.1",
         "Address of the network interface to announce rooms on. The default "
         "keeps announcements on this machine; give the address your "
         "neighbours reach you on to announce to the network."],
        ["discovery-group", None, DEFAULT_GROUP, "Multicast group for discovery."],
        ["discovery-port", None, DEFAULT_PORT, "UDP port for discovery.",
         _positive_int("--discovery-port")],
        ["ttl", None, DEFAULT_ANNOUNCE_TTL,
         "Multicast TTL (router hops) of announcements.", _positive_int("--ttl")],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["rooms"] = []
        self["listen"] = []
        self["announce-addresses"] = []

    def opt_room(self, name: str) -> None:
        """Host the room NAME (channel #NAME); repeat for more [default: lobby]."""
        self["rooms"].append(name)

    def opt_listen(self, description: str) -> None:
        """Also listen on this endpoint (e.g. tcp:6667:interface=127.0.0.1); repeat for more."""
        self["listen"].append(description)

    def opt_announce_address(self, address: str) -> None:
        """Announce this room server address (HOST:PORT) instead of the TLS listener's; repeat for more."""
        from chatroom.core.discovery import ParseError, RoomAddress
        try:
            RoomAddress.parse(address)
        except ParseError as e:
            raise usage.UsageError(str(e)) from None
        self["announce-addresses"].append(address)

    def postOptions(self) -> None:
        from chatroom.core.names import valid_room_name
        for name in self["rooms"]:
            if not valid_room_name(name, self["max-room-name-length"]):
                raise usage.UsageError(
                    "%r is not a usable room name: use up to %d letters, digits "
                    "and '-_.', without the '#'." % (
                        name, self["max-room-name-length"]))
        if not 1 <= self["ttl"] <= 255:
            raise usage.UsageError("--ttl must be from 1 to 255.")
        try:
            if ipaddress.ip_address(self["discovery-interface"]).version != 4:
                raise ValueError
        except ValueError:
            raise usage.UsageError(
                "--discovery-interface must be the IPv4 address of one of this "
                "machine's interfaces, such as 127.0.0.1.") from None
        try:
            if not ipaddress.ip_address(self["discovery-group"]).is_multicast:
                raise ValueError
        except ValueError:
            raise usage.UsageError("--discovery-group must be an IPv4 multicast "
                                   "address such as %s." % (DEFAULT_GROUP,)) from None
        if not self["rooms"] and not self["open-rooms"]:
            self["rooms"] = ["lobby"]
        if self["data-dir"] is None:
            self["data-dir"] = default_data_dir()
        try:
            self["identity"], self["store"] = open_data_dir(self["data-dir"])
        except ChatroomError as e:
            raise usage.UsageError(str(e)) from None
        motd = self["motd-file"]
        self["motd"] = []
        if motd:
            try:
                with open(motd, encoding="utf-8") as f:
                    self["motd"] = f.read().splitlines()
            except (OSError, UnicodeDecodeError) as e:
                raise usage.UsageError("Cannot read the MOTD file %s: %s." % (
                    motd, e)) from None
        self["operators"] = {}
        if self["oper-file"]:
            self["operators"] = read_operators(self["oper-file"])

    def discovery(self):
        """The L{DiscoverySettings} these options ask for, or C{None}."""
        from chatroom.service import DiscoverySettings
        if self["no-discovery"]:
            return None
        return DiscoverySettings(
            interface=self["discovery-interface"], group=self["discovery-group"],
            port=self["discovery-port"], ttl=self["ttl"],
            addresses=tuple(self["announce-addresses"]))

    def limits(self) -> Limits:
        """The L{Limits} these options ask for."""
        return Limits(open_rooms=self["open-rooms"],
                      max_rooms=self["max-rooms"],
                      opened_per_hour=self["max-opened-per-hour"],
                      room_name_length=self["max-room-name-length"],
                      room_idle_seconds=self["room-idle-days"] * 86400.0,
                      max_clients=self["max-clients"],
                      max_per_address=self["max-per-address"],
                      flood_burst=self["flood-burst"],
                      flood_rate=self["flood-rate"])


def read_operators(path: str) -> dict[str, str]:
    """Server operators from C{path}: one C{name password} per line, blank
    lines and C{#} comments ignored.

    @raise usage.UsageError: the file cannot be read, others may read it
        (it holds passwords, like the host key), or a line is malformed.
    """
    try:
        mode = os.stat(path).st_mode
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise usage.UsageError("Cannot read the operator file %s: %s." % (
            path, e)) from None
    if mode & 0o077:
        raise usage.UsageError(
            "The operator file %s holds passwords but others may read it; "
            "run: chmod 600 %s" % (path, path))
    operators = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2:
            raise usage.UsageError(
                "%s line %d: write 'name password' (no spaces in either)."
                % (path, number))
        operators[fields[0]] = fields[1]
    return operators


def open_data_dir(path: str):
    """Create (mode 0700) or check C{path}; load the key, open the history.

    @raise ChatroomError: with a sentence saying what is wrong and what to do.
    """
    from chatroom.history import HistoryStore
    from chatroom.identity import load_or_create
    from chatroom.service import data_paths
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as e:
        raise DataDirectoryError("Cannot create the data directory %s: %s." % (
            path, e.strerror)) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise DataDirectoryError(
            "The data directory %s is not writable; choose another with "
            "--data-dir." % (path,))
    key_path, db_path = data_paths(path)
    identity = load_or_create(key_path)
    return identity, HistoryStore(db_path)


def makeService(options: Options):
    """Build the host service from parsed options (this touches the reactor)."""
    from twisted.internet import reactor

    from chatroom.identity import colon_hex
    from chatroom.service import HostService

    identity = options["identity"]
    host_service = HostService(
        reactor, identity, options["store"], options["rooms"],
        tls_port=options["port"], tls_interface=options["interface"],
        listen=options["listen"], limits=options.limits(),
        server_name=options["server-name"], motd=options["motd"],
        history_keep=options["history-keep"] or None,
        history_days=options["history-days"] or None,
        discovery=options.discovery(), operators=options["operators"])
    out = sys.stdout
    out.write("chatroom host key %s\n" % (identity.fingerprint,))
    for name in options["rooms"]:
        out.write("  hosting #%s (room %s/%s)\n" % (
            name, identity.short_fingerprint, name))
    out.write("  TLS on port %d\n" % (options["port"],))
    out.write("  irssi pin (public key):   %s\n" % (colon_hex(identity.spki_sha256),))
    out.write("  WeeChat pin (certificate): %s\n" % (
        identity.certificate_sha256.hex(),))
    out.flush()
    return host_service
