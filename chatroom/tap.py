# -*- test-case-name: tests.test_tap -*-
"""C{twistd chatroom}: the options of a room host and L{makeService}."""

from __future__ import annotations

import ipaddress
import math
import os
import signal
import sys
from typing import Any

from twisted.logger import Logger
from twisted.python import usage

from chatroom.wellknown import (
    DISCOVERY_GROUP,
    DISCOVERY_PORT,
    DISCOVERY_TTL,
    FANOUT_GROUP,
    FANOUT_PORT,
    FANOUT_TTL,
)
from chatroom.errors import ChatroomError, DataDirectoryError
from chatroom.host import Limits


def default_data_dir() -> str:
    """C{$XDG_DATA_HOME/chatroom}, or C{~/.local/share/chatroom}."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(base, "chatroom")


def _number(kind: type, name: str, least: int = 0, most: float | None = None):
    """An option converter: a number of C{kind} (int or float) from C{least}
    to C{most} (no upper bound when C{None}).

    A float must be finite: C{inf} and C{1e400} (which Python reads as
    infinity) are refused here rather than crash the hourly upkeep that
    turns days into milliseconds.
    """
    noun = "a whole number" if kind is int else "a finite number"
    if most is None:
        allowed = ", %d or more" % (least,)
    else:
        allowed = " from %d to %d" % (least, most)

    def convert(value: str):
        try:
            number = kind(value)
        except ValueError:
            number = least - 1
        # "not least <= number" also refuses float("nan").
        if (
            not least <= number
            or (most is not None and number > most)
            or (kind is float and not math.isfinite(number))
        ):
            raise ValueError("%s must be %s%s" % (name, noun, allowed))
        return number

    convert.coerceDoc = "%s%s." % (noun.capitalize(), allowed)  # type: ignore[attr-defined]
    return convert


def _positive_int(name: str, least: int = 0, most: int | None = None):
    return _number(int, name, least, most)


def _positive_float(name: str, most: float | None = None):
    return _number(float, name, 0, most)


#: The most days C{--history-days} and C{--room-idle-days} accept (about
#: 2,700 years: "never" for a host).  A bound, not only finiteness: days
#: become milliseconds before the epoch that SQLite compares as a signed
#: 64-bit integer, and 1e300 days would not fit.
MAX_DAYS = 1000000

#: The longest C{--max-room-name-length}: a signed announcement carries a
#: room name of at most 64 bytes (C{MAX_ROOM_NAME_BYTES} of
#: L{chatroom.core.discovery}, not imported here so that C{twistd --help}
#: stays light; a test checks they agree), and room names are ASCII.
MAX_ROOM_NAME_LENGTH = 64


class Options(usage.Options):
    """Options of C{twistd chatroom}."""

    synopsis = "[options]"
    longdesc = (
        "Host IRC-compatible chat rooms. Each --room NAME is the channel "
        "#NAME. Clients connect with TLS (the certificate is bound to the "
        "host key printed at start) and speak IRC with IRCv3 capabilities."
    )

    optParameters = [
        [
            "data-dir",
            "d",
            None,
            "Directory for the host key and the history database "
            "[default: $XDG_DATA_HOME/chatroom or ~/.local/share/chatroom].",
        ],
        [
            "port",
            "p",
            6697,
            "TCP port of the TLS listener (0: any free port, logged at start).",
            _positive_int("--port"),
        ],
        [
            "interface",
            "i",
            None,
            "Address the TLS listener binds to [default: all IPv4 addresses; "
            "'::' for IPv6].",
        ],
        [
            "server-name",
            None,
            None,
            "Name the host uses in its replies [default: FINGERPRINT.chatroom].",
        ],
        ["motd-file", None, None, "A text file shown as message of the day."],
        [
            "oper-file",
            None,
            None,
            "Server operators for OPER: a file of 'name password' lines, "
            "readable by its owner only (mode 0600); read again on SIGHUP.",
        ],
        [
            "history-keep",
            None,
            0,
            "Keep at most this many events per room (0: no limit).",
            _positive_int("--history-keep"),
        ],
        [
            "history-days",
            None,
            0,
            "Delete events older than this many days (0: keep forever).",
            _positive_float("--history-days", MAX_DAYS),
        ],
        [
            "max-clients",
            None,
            256,
            "Most clients connected at once.",
            _positive_int("--max-clients"),
        ],
        [
            "max-per-address",
            None,
            5,
            "Most connections at once from one address (loopback exempt).",
            _positive_int("--max-per-address"),
        ],
        [
            "flood-burst",
            None,
            5,
            "Commands a client may send at once.",
            _positive_int("--flood-burst"),
        ],
        [
            "max-rooms",
            None,
            100,
            "Most rooms this host serves, fixed and opened together.",
            _positive_int("--max-rooms"),
        ],
        [
            "max-opened-per-hour",
            None,
            5,
            "Most rooms one connection may open per hour.",
            _positive_int("--max-opened-per-hour"),
        ],
        [
            "max-room-name-length",
            None,
            32,
            "Longest room name, without the '#' (at most 64: the longest "
            "name an announcement carries).",
            _positive_int("--max-room-name-length", 1, MAX_ROOM_NAME_LENGTH),
        ],
        [
            "room-idle-days",
            None,
            30.0,
            "Remove a room users opened after this many days without an event "
            "(while nobody is in it).",
            _positive_float("--room-idle-days", MAX_DAYS),
        ],
        [
            "max-handshakes",
            None,
            64,
            "Most TLS handshakes in progress at once; at the cap the host stops "
            "accepting until one completes.",
            _positive_int("--max-handshakes"),
        ],
        [
            "max-handshakes-per-address",
            None,
            3,
            "Most TLS handshakes in progress at once from one address (IPv6: "
            "one /64; loopback exempt); more are closed at once.",
            _positive_int("--max-handshakes-per-address"),
        ],
        [
            "tls-endpoint",
            None,
            None,
            "Serve TLS on this Twisted server endpoint instead of --port and "
            "--interface, e.g. systemd:domain=INET:index=0 for a socket systemd "
            "holds (see docs/operations.rst).",
        ],
        [
            "flood-rate",
            None,
            2.0,
            "Commands per second after the burst; excess is delayed "
            "(0: no flood control).",
            _positive_float("--flood-rate"),
        ],
    ]

    optFlags = [
        ["no-discovery", None, "Do not announce rooms on the network."],
        [
            "open-rooms",
            None,
            "Let users open rooms: joining an unknown room creates it, and its "
            "creator becomes its operator. With no --room, the host then has "
            "no fixed room (no #lobby) until a user opens one.",
        ],
    ]

    optParameters += [
        [
            "discovery-interface",
            None,
            "127.0.0.1",
            "Address of the network interface to announce rooms on. The default "
            "keeps announcements on this machine; give the address your "
            "neighbours reach you on to announce to the network.",
        ],
        ["discovery-group", None, DISCOVERY_GROUP, "Multicast group for discovery."],
        [
            "discovery-port",
            None,
            DISCOVERY_PORT,
            "UDP port for discovery.",
            _positive_int("--discovery-port"),
        ],
        [
            "ttl",
            None,
            DISCOVERY_TTL,
            "Multicast TTL (router hops) of announcements.",
            _positive_int("--ttl"),
        ],
    ]

    optFlags += [
        [
            "fanout",
            None,
            "Offer multicast delivery (fan-out) in every room: members whose "
            "client asks for it get each event once from a multicast group, "
            "encrypted under a room key (docs/protocol-fanout.rst).",
        ],
    ]
    optParameters += [
        [
            "fanout-interface",
            None,
            "127.0.0.1",
            "Address of the network interface fan-out datagrams leave through. "
            "The default keeps them on this machine.",
        ],
        ["fanout-group", None, FANOUT_GROUP, "Multicast group for fan-out."],
        [
            "fanout-port",
            None,
            FANOUT_PORT,
            "UDP port for fan-out.",
            _positive_int("--fanout-port"),
        ],
        [
            "fanout-ttl",
            None,
            FANOUT_TTL,
            "Multicast TTL (router hops) of fan-out datagrams.",
            _positive_int("--fanout-ttl"),
        ],
    ]
    optFlags += [
        [
            "private",
            None,
            "The rooms given with --room are private: only clients with the "
            "room password or a client key on the allow-list may join, and "
            "others see neither their members nor their history.",
        ],
    ]
    optParameters += [
        [
            "room-password",
            None,
            None,
            "Password of the private rooms (the channel key of JOIN, or PASS).",
        ],
        [
            "allow-file",
            None,
            None,
            "A file of client key fingerprints allowed into the private rooms, "
            "one per line; read again on SIGHUP.",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["rooms"] = []
        self["allow-keys"] = []
        self["listen"] = []
        self["announce-addresses"] = []

    def opt_room(self, name: str) -> None:
        """Host the room NAME (channel #NAME); repeat for more [default: lobby; none with --open-rooms]."""
        self["rooms"].append(name)

    def opt_allow_key(self, fingerprint: str) -> None:
        """Let the client with this key fingerprint (chatroom whoami) into the private rooms; repeat for more."""
        from chatroom.access import parse_fingerprint

        try:
            self["allow-keys"].append(parse_fingerprint(fingerprint))
        except ValueError as e:
            raise usage.UsageError(str(e) + ".") from None

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

    #: Set when parsing failed: twistd then prints this object's usage
    #: before the error, and a hundred lines of help would bury the one
    #: that says what is wrong.
    _refused = False

    def parseOptions(self, options: list[str] | None = None) -> None:
        """Parse, remembering a refusal (see L{getUsage}).

        @raise usage.UsageError: one sentence saying what is wrong.
        """
        try:
            super().parseOptions(options)
        except usage.UsageError:
            self._refused = True
            raise

    def getUsage(self, width: int | None = None) -> str:
        """Every option with its help, or after a refused command line one
        line that says where that is (twistd prints the usage, then the
        error)."""
        if self._refused:
            return "twistd chatroom --help lists every option.\n"
        return super().getUsage(width)

    def postOptions(self) -> None:
        from chatroom.core.names import valid_room_name

        for name in self["rooms"]:
            if not valid_room_name(name, self["max-room-name-length"]):
                raise usage.UsageError(
                    "%r is not a usable room name: use up to %d letters, digits "
                    "and '-_.', without the '#'." % (name, self["max-room-name-length"])
                )
        if not 1 <= self["ttl"] <= 255:
            raise usage.UsageError("--ttl must be from 1 to 255.")
        try:
            if ipaddress.ip_address(self["discovery-interface"]).version != 4:
                raise ValueError
        except ValueError:
            raise usage.UsageError(
                "--discovery-interface must be the IPv4 address of one of this "
                "machine's interfaces, such as 127.0.0.1."
            ) from None
        try:
            if not ipaddress.ip_address(self["discovery-group"]).is_multicast:
                raise ValueError
        except ValueError:
            raise usage.UsageError(
                "--discovery-group must be an IPv4 multicast "
                "address such as %s." % (DISCOVERY_GROUP,)
            ) from None
        for name, value in (
            ("--fanout-interface", self["fanout-interface"]),
            ("--fanout-group", self["fanout-group"]),
        ):
            try:
                address = ipaddress.ip_address(value)
                if address.version != 4 or (
                    address.is_multicast != (name == "--fanout-group")
                ):
                    raise ValueError
            except ValueError:
                raise usage.UsageError(
                    "%s must be an IPv4 %s such as %s."
                    % (
                        name,
                        "multicast group"
                        if name == "--fanout-group"
                        else "address of one of this machine's interfaces",
                        FANOUT_GROUP if name == "--fanout-group" else "127.0.0.1",
                    )
                ) from None
        if not 1 <= self["fanout-ttl"] <= 255 or not 1 <= self["fanout-port"] <= 65535:
            raise usage.UsageError(
                "--fanout-ttl must be from 1 to 255 and --fanout-port from 1 to 65535."
            )
        if self["private"]:
            if not (self["room-password"] or self["allow-keys"] or self["allow-file"]):
                raise usage.UsageError(
                    "--private needs --room-password, --allow-key or "
                    "--allow-file: otherwise nobody could join."
                )
        elif self["room-password"] or self["allow-keys"] or self["allow-file"]:
            raise usage.UsageError(
                "--room-password, --allow-key and "
                "--allow-file only apply with --private."
            )
        if not self["rooms"] and not self["open-rooms"]:
            self["rooms"] = ["lobby"]
        if self["data-dir"] is None:
            self["data-dir"] = default_data_dir()
        if self["max-handshakes"] < 1 or self["max-handshakes-per-address"] < 1:
            raise usage.UsageError(
                "--max-handshakes and --max-handshakes-per-address must be 1 or more."
            )
        self["operators"] = {}
        if self["oper-file"]:
            self["operators"] = read_operators(self["oper-file"])

    def discovery(self):
        """The L{DiscoverySettings} these options ask for, or C{None}."""
        from chatroom.service import DiscoverySettings

        if self["no-discovery"]:
            return None
        return DiscoverySettings(
            interface=self["discovery-interface"],
            group=self["discovery-group"],
            port=self["discovery-port"],
            ttl=self["ttl"],
            addresses=tuple(self["announce-addresses"]),
        )

    def fanout(self):
        """The L{FanoutSettings} these options ask for, or C{None}."""
        from chatroom.service import FanoutSettings

        if not self["fanout"]:
            return None
        return FanoutSettings(
            interface=self["fanout-interface"],
            group=self["fanout-group"],
            port=self["fanout-port"],
            ttl=self["fanout-ttl"],
        )

    def private(self):
        """The L{PrivateRooms} rule these options ask for, or C{None}.

        @raise ChatroomError: the allow-list file cannot be used.
        """
        from chatroom.access import PrivateRooms

        if not self["private"]:
            return None
        return PrivateRooms(
            self["room-password"] or "",
            frozenset(self["allow-keys"]),
            self["allow-file"],
        )

    def limits(self) -> Limits:
        """The L{Limits} these options ask for."""
        return Limits(
            open_rooms=self["open-rooms"],
            max_rooms=self["max-rooms"],
            opened_per_hour=self["max-opened-per-hour"],
            room_name_length=self["max-room-name-length"],
            room_idle_seconds=self["room-idle-days"] * 86400.0,
            max_clients=self["max-clients"],
            max_per_address=self["max-per-address"],
            flood_burst=self["flood-burst"],
            flood_rate=self["flood-rate"],
        )


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
        raise usage.UsageError(
            "Cannot read the operator file %s: %s." % (path, e)
        ) from None
    if mode & 0o077:
        raise usage.UsageError(
            "The operator file %s holds passwords but others may read it; "
            "run: chmod 600 %s" % (path, path)
        )
    operators = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2:
            raise usage.UsageError(
                "%s line %d: write 'name password' (no spaces in either)."
                % (path, number)
            )
        operators[fields[0]] = fields[1]
    return operators


def open_data_dir(path: str):
    """Create (mode 0700) or check C{path}; load the key, open the history.

    @return: C{(identity, store)}: the L{HostIdentity} and the opened
        L{HistoryStore}.
    @raise ChatroomError: with a sentence saying what is wrong and what to do.
    """
    from chatroom.history import HistoryStore
    from chatroom.identity import load_or_create
    from chatroom.service import data_paths

    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as e:
        raise DataDirectoryError(
            "Cannot create the data directory %s: %s." % (path, e.strerror)
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise DataDirectoryError(
            "The data directory %s is not writable; choose another with "
            "--data-dir." % (path,)
        )
    key_path, db_path = data_paths(path)
    identity = load_or_create(key_path)
    return identity, HistoryStore(db_path)


def read_motd(path: str | None) -> list[str]:
    """The lines of the MOTD file at C{path} (none when C{path} is C{None}).

    @raise ChatroomError: the file cannot be read as UTF-8 text.
    """
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ChatroomError(
            "Cannot read the MOTD file %s: %s."
            % (path, getattr(e, "strerror", None) or e)
        ) from None


def build_service(reactor: Any, options: Options):
    """Open the data directory and compose the host service C{options} ask for.

    Nothing here listens yet: that happens when the service starts.

    @raise ChatroomError: the data directory, the MOTD file or a listener
        description cannot be used; the message is one sentence.
    """
    from chatroom.handshakes import HandshakeLimits
    from chatroom.service import HostService

    motd = read_motd(options["motd-file"])
    identity, store = open_data_dir(options["data-dir"])
    try:
        host_service = HostService(
            reactor,
            identity,
            store,
            options["rooms"],
            tls_port=options["port"],
            tls_interface=options["interface"] or "",
            tls_endpoint=options["tls-endpoint"],
            listen=options["listen"],
            limits=options.limits(),
            handshakes=HandshakeLimits(
                in_progress=options["max-handshakes"],
                per_address=options["max-handshakes-per-address"],
            ),
            server_name=options["server-name"],
            motd=motd,
            history_keep=options["history-keep"] or None,
            history_days=options["history-days"] or None,
            discovery=options.discovery(),
            fanout=options.fanout(),
            private=options.private(),
            operators=options["operators"],
        )
    except BaseException:
        store.close()
        raise
    return host_service


_log = Logger()


def reload_on_hangup(host_service: Any, oper_file: str | None) -> None:
    """What C{SIGHUP} does: read again what can be read again, and log it.

    The allow-list file of the private rooms (when C{host_service} has
    private rooms, L{HostService.reload_access}) and the operator file
    C{oper_file} (C{--oper-file}, when given; the next C{OPER} checks
    against it, users already operators stay so).  A file that cannot be
    used is logged in one sentence and the old list kept.  With nothing to
    reload, one line says so.  Never raises.
    """
    reloaded = False
    if host_service.private is not None:
        host_service.reload_access()
        reloaded = True
    if oper_file:
        reloaded = True
        try:
            operators = read_operators(oper_file)
        except usage.UsageError as e:
            _log.error(
                "The operator file was not read again, the operators are "
                "unchanged: {error}",
                error=str(e),
            )
        else:
            host_service.host.operators = operators
            _log.info(
                "Operator file {path} read again: {count} server operator(s).",
                path=oper_file,
                count=len(operators),
            )
    if not reloaded:
        _log.info(
            "SIGHUP: nothing to reload (no private rooms, no --oper-file); "
            "the host goes on."
        )


def makeService(options: Options):
    """Build the host service from parsed options (this touches the reactor).

    A start-up problem ends the program with one sentence on standard error
    and exit status 1 (twistd prints a C{SystemExit}'s message), never a
    traceback.
    """
    from twisted.internet import reactor

    from chatroom.identity import colon_hex

    try:
        host_service = build_service(reactor, options)
    except ChatroomError as e:
        raise SystemExit("chatroom: %s" % (e,)) from None
    identity = host_service.identity
    out = sys.stdout
    out.write("chatroom host key fingerprint %s\n" % (identity.fingerprint,))
    for name in options["rooms"]:
        out.write(
            "  hosting #%s (room %s/%s)%s\n"
            % (
                name,
                identity.short_fingerprint,
                name,
                ", private" if options["private"] else "",
            )
        )
    if options["open-rooms"]:
        # Without --room nothing above says what is hosted.
        out.write(
            "  users may open rooms (JOIN #NAME)%s\n"
            % ("" if options["rooms"] else "; no fixed room",)
        )
    # Always handled: SIGHUP's default action ends the process at once,
    # with no goodbye and no log line (and systemd's Restart=on-failure
    # does not restart it).  A signal handler must not touch the reactor,
    # so it only schedules.
    oper_file = options["oper-file"] and os.path.abspath(options["oper-file"])
    signal.signal(
        signal.SIGHUP,
        lambda *_: reactor.callFromThread(reload_on_hangup, host_service, oper_file),
    )
    if options["tls-endpoint"]:
        out.write("  TLS on %s\n" % (options["tls-endpoint"],))
    elif options["port"]:
        out.write("  TLS on port %d\n" % (options["port"],))
    else:
        out.write("  TLS on a free port (logged once listening)\n")
    out.write("  irssi pin (public key):   %s\n" % (colon_hex(identity.spki_sha256),))
    out.write(
        "  WeeChat pin (certificate): %s\n" % (identity.certificate_sha256.hex(),)
    )
    out.flush()
    return host_service
