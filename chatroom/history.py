# -*- test-case-name: tests.test_history -*-
"""The SQLite history store; every SQL statement of chatroom lives here.

Writes run on the caller's thread (the reactor thread in the host).  The
host commits once per reactor turn (group commit), so one fsync covers every
event of that turn, and nothing is sent to any member before that commit.
The database runs in WAL mode with C{synchronous=FULL}: a commit that
returned survives a process crash and a power loss.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii
import os
import sqlite3
from importlib import resources
from typing import Iterable, Sequence

import attrs
from zope.interface import implementer

from twisted.logger import Logger

from chatroom.core.names import casefold
from chatroom.core.room import Event, Topic
from chatroom.errors import HistoryStoreError
from chatroom.interfaces import IHistoryStore

_log = Logger()

#: The schema version this code writes.
SCHEMA_VERSION = 4

#: Commands that are messages, as opposed to membership and topic events.
MESSAGE_COMMANDS = ("PRIVMSG", "NOTICE")

_COLUMNS = "room, seq, time_ms, command, source, params, tags"

#: Commands whose events change who is in a room (the C{present} table).
MEMBERSHIP_COMMANDS = frozenset({"JOIN", "PART", "QUIT", "KICK", "NICK"})

_JOINED = "INSERT OR REPLACE INTO present (room, nick, source, seq) VALUES (?, ?, ?, ?)"
_LEFT = "DELETE FROM present WHERE room = ? AND nick = ?"
# A nick is the host's, not one room's: the change applies in every room.
# OR REPLACE: a row already under the new nick cannot make the turn fail.
_RENAMED = "UPDATE OR REPLACE present SET nick = ?, source = ? WHERE nick = ?"


def _nick_of(source: str) -> str:
    """The folded nick of a C{nick!user@host} source."""
    return casefold(source.split("!", 1)[0])


def _presence_change(event: Event) -> tuple[str, tuple[object, ...]] | None:
    """The C{present} table statement for a membership event, or C{None}.

    C{JOIN} adds its source; C{PART} and C{QUIT} remove their source,
    C{KICK} its target (the second parameter); an unsequenced C{NICK}
    renames the member wherever it is.
    """
    command = event.command
    if command == "JOIN":
        return _JOINED, (event.room, _nick_of(event.source), event.source, event.seq)
    if command in ("PART", "QUIT"):
        return _LEFT, (event.room, _nick_of(event.source))
    if command == "KICK" and len(event.params) > 1:
        return _LEFT, (event.room, casefold(event.params[1]))
    if command == "NICK" and event.params:
        new = event.params[0]
        rest = event.source.partition("!")
        return _RENAMED, (
            casefold(new),
            new + rest[1] + rest[2],
            _nick_of(event.source),
        )
    return None


def _read_schema(name: str) -> str:
    return resources.files("chatroom.schemas").joinpath(name).read_text("utf-8")


#: SQLite's page cache for the history database, in KiB.  SQLite's default
#: is 2000 KiB, and a host that appends at full speed fills all of it (the
#: cache keeps pages it has written).  Appends and CHATHISTORY touch the
#: newest pages of the events table and its two indexes (a few pages deep):
#: 512 KiB (128 pages of 4 KiB) holds those with room to spare and took
#: SQLite from 2.1 MiB to 0.55 MiB after 300,000 appended events, with no
#: loss of append speed (docs/benchmarks.rst).
PAGE_CACHE_KIB = 512


def _configure(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    # A negative cache_size is in KiB rather than pages.
    db.execute("PRAGMA cache_size=-%d" % (PAGE_CACHE_KIB,))


def _new_private_file(path: str) -> None:
    """Create C{path} empty with mode 0600 (replacing a leftover).

    SQLite would create a missing database file 0666 less the umask
    (usually 0644), readable by everyone when the directory is; an empty
    file is a valid new database, so chatroom creates it first.  SQLite
    gives the C{-wal}, C{-shm} and C{-journal} files it makes the mode of
    the database file, so they are 0600 too.  Same rule as the key files
    (O_EXCL, 0600: LIMITS.md).
    """
    if os.path.lexists(path):
        os.remove(path)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _create(path: str) -> None:
    """Create a new database at C{path} atomically (create, then rename),
    readable and writable by its owner only (mode 0600)."""
    temporary = path + ".new"
    _new_private_file(temporary)
    db = sqlite3.connect(temporary, isolation_level=None)
    try:
        db.executescript(
            "BEGIN;" + _read_schema("history-v%d.sql" % (SCHEMA_VERSION,)) + "COMMIT;"
        )
    finally:
        db.close()
    os.replace(temporary, path)


def _warn_if_readable(path: str) -> None:
    """Log one warning when others may read or write the database at
    C{path}: chatroom creates it 0600, so a looser mode was set by hand or
    by an older chatroom, and it is the operator's to change."""
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        _log.warn(
            "The history database {path} can be read by other users (mode "
            "{mode}); it holds every room's messages. To keep them private: "
            "chmod 600 {path} (and its -wal and -shm files).",
            path=path,
            mode="%04o" % (mode,),
        )


def backup_path(path: str, version: int) -> str:
    """Where the copy of database C{path} at schema C{version} is kept."""
    return "%s.schema-v%d.backup" % (path, version)


def _backup(db: sqlite3.Connection, path: str, version: int) -> str:
    """Copy the database (at schema C{version}) next to C{path}; return where.

    SQLite's online backup copies a consistent snapshot, including what is
    still in the WAL file; the copy is written under a temporary name and
    renamed into place, so a half-written copy never has the final name.
    An older copy of the same version is replaced: the current file holds
    everything it held and more.
    """
    target = backup_path(path, version)
    temporary = target + ".new"
    _new_private_file(temporary)
    copy = sqlite3.connect(temporary)
    try:
        db.backup(copy)
    finally:
        copy.close()
    os.replace(temporary, target)
    return target


def _upgrade(db: sqlite3.Connection, version: int) -> None:
    """Apply C{upgrade-to-vN.sql} for every N after C{version}, one by one."""
    while version < SCHEMA_VERSION:
        version += 1
        script = _read_schema("upgrade-to-v%d.sql" % (version,))
        db.executescript(
            "BEGIN;" + script + "UPDATE version SET version = %d; COMMIT;" % (version,)
        )


def _event_from_row(row: Sequence) -> Event:
    room, seq, time_ms, command, source, params, tags = row
    return Event(
        room=room,
        seq=seq,
        time_ms=time_ms,
        command=command,
        source=source,
        params=tuple(json.loads(params)),
        client_tags=json.loads(tags),
    )


@attrs.frozen
class RoomRecord:
    """A room's stored state: topic, whether a user opened it, its modes."""

    topic: Topic = attrs.field(factory=Topic)
    opened: bool = False
    modes: str = ""
    channel_key: str = ""
    created_ms: int = 0
    #: The C{+l} member limit, 0 for none.
    member_limit: int = 0
    #: The C{+b} list: C{(mask, setter, time_ms)} each.
    bans: tuple[tuple[str, str, int], ...] = ()


def json_strings(strings: tuple[str, ...]) -> str:
    """The JSON array of C{strings}, exactly as C{json.dumps} writes it
    (ASCII only, C{", "} between items).

    Every stored event's parameters go through here: the general encoder
    takes 3.4 microseconds for a message's two parameters, this 0.55
    (measured 2026-11-30), which is a sixth of the host's work per message
    at full speed.
    """
    return "[" + ", ".join(map(encode_basestring_ascii, strings)) + "]"


@implementer(IHistoryStore)
class HistoryStore:
    """Rooms' events, topics and counters in one SQLite database.

    @param path: the database file, or C{":memory:"} for tests.
    """

    def __init__(self, path: str) -> None:
        try:
            if path != ":memory:" and not os.path.exists(path):
                _create(path)
            self._db = sqlite3.connect(path, isolation_level=None)
            _configure(self._db)
            if path == ":memory:":
                self._db.executescript(
                    _read_schema("history-v%d.sql" % (SCHEMA_VERSION,))
                )
            ((version,),) = self._db.execute("SELECT version FROM version")
            if path != ":memory:":
                _warn_if_readable(path)
        except sqlite3.Error as e:
            raise HistoryStoreError(
                "The history database %s cannot be used (%s). Move it away "
                "to start with an empty history." % (path, e)
            ) from None
        if version > SCHEMA_VERSION:
            self._db.close()
            raise HistoryStoreError(
                "The history database %s was written by a newer chatroom "
                "(schema %d; this one knows %d). Upgrade chatroom."
                % (path, version, SCHEMA_VERSION)
            )
        if version < SCHEMA_VERSION and path != ":memory:":
            try:
                copy = _backup(self._db, path, version)
            except (sqlite3.Error, OSError) as e:
                self._db.close()
                raise HistoryStoreError(
                    "The history database %s needs an upgrade (schema %d to "
                    "%d), but no copy of it could be kept first (%s). Free "
                    "space next to it, or upgrade a copy by hand."
                    % (path, version, SCHEMA_VERSION, e)
                ) from None
            _log.info(
                "Upgrading the history database {path} from schema "
                "{old} to {new}; the version {old} database is kept as "
                "{copy}",
                path=path,
                old=version,
                new=SCHEMA_VERSION,
                copy=copy,
            )
        try:
            _upgrade(self._db, version)
        except sqlite3.Error as e:
            self._db.close()
            raise HistoryStoreError(
                "The history database %s could not be upgraded from schema %d "
                "(%s); it is unchanged, and a copy is next to it." % (path, version, e)
            ) from None

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    # Writing

    def append(self, events: Iterable[Event]) -> None:
        """Store C{events} in one transaction: all of them, or none.

        Events without a sequence number (nick changes) are not stored.
        A C{TOPIC} event also records the room's current topic; C{JOIN},
        C{PART}, C{QUIT}, C{KICK} and nick changes keep the C{present}
        table (L{present}) in step with the stored events.
        """
        rows = []
        topics = []
        presence = []
        for event in events:
            if event.command in MEMBERSHIP_COMMANDS:
                change = _presence_change(event)
                if change is not None and (
                    event.seq is not None or event.command == "NICK"
                ):
                    presence.append(change)
            if event.seq is None:
                continue
            rows.append(
                (
                    event.room,
                    event.seq,
                    event.time_ms,
                    event.command,
                    event.source,
                    json_strings(event.params),
                    json.dumps(event.client_tags) if event.client_tags else "{}",
                )
            )
            if event.command == "TOPIC":
                topics.append(
                    (event.params[1], event.source, event.time_ms, event.room)
                )
        if not rows and not presence:
            return
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT INTO events (%s) VALUES (?, ?, ?, ?, ?, ?, ?)" % (_COLUMNS,),
                rows,
            )
            if topics:
                db.executemany(
                    "UPDATE rooms SET topic = ?, topic_setter = ?,"
                    " topic_time_ms = ? WHERE room = ?",
                    topics,
                )
            # In the events' order: a JOIN and a PART of one turn cancel.
            for statement, parameters in presence:
                db.execute(statement, parameters)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def add_room(
        self, key: str, name: str, opened: bool = False, now_ms: int = 0
    ) -> None:
        """Remember room C{key} (spelled C{name}); host it again if removed."""
        self._db.execute(
            "INSERT INTO rooms (room, name, opened, created_ms, modes)"
            " VALUES (?, ?, ?, ?, 'n')"
            " ON CONFLICT (room) DO UPDATE SET hosted = 1,"
            " opened = MAX(opened, excluded.opened)",
            (key, name, int(opened), now_ms),
        )

    def set_modes(
        self,
        key: str,
        modes: str,
        channel_key: str,
        member_limit: int = 0,
        bans: Sequence[tuple[str, str, int]] = (),
    ) -> None:
        """Record room C{key}'s flag modes, C{+k} key, C{+l} limit and
        C{+b} list (C{(mask, setter, time_ms)} each)."""
        self._db.execute(
            "UPDATE rooms SET modes = ?, channel_key = ?, member_limit = ?,"
            " bans = ? WHERE room = ?",
            (
                modes,
                channel_key,
                member_limit,
                json.dumps([list(b) for b in bans]),
                key,
            ),
        )

    def remove_room(self, key: str) -> None:
        """Stop hosting room C{key}: its events go, but for the newest one,
        so that its numbering continues if it is ever opened again."""
        db = self._db
        db.execute("BEGIN")
        try:
            db.execute(
                "UPDATE rooms SET hosted = 0, opened = 0, modes = 'n',"
                " channel_key = '', member_limit = 0, bans = '[]', topic = '', topic_setter = '',"
                " topic_time_ms = 0 WHERE room = ?",
                (key,),
            )
            db.execute(
                "DELETE FROM events WHERE room = ? AND seq < ?",
                (key, self.last_seq(key)),
            )
            db.execute("DELETE FROM present WHERE room = ?", (key,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def reserve_counter(self, name: str, count: int) -> int:
        """Reserve C{count} values of counter C{name}; return the first.

        The reservation is committed (and synced) before this returns, so a
        value handed out is never handed out again, even after C{kill -9}.
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT value FROM counters WHERE name = ?", (name,)
            ).fetchone()
            first = (row[0] if row else 0) + 1
            db.execute(
                "INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)",
                (name, first + count - 1),
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return first

    def prune(self, room: str, keep: int | None, before_ms: int | None) -> int:
        """Delete old events of C{room}; return how many were deleted.

        Keeps at most C{keep} newest events and none older than
        C{before_ms}, but always the newest event, so sequence numbers are
        never reused after a restart.
        """
        last = self.last_seq(room)
        deleted = 0
        if keep is not None:
            deleted += self._db.execute(
                "DELETE FROM events WHERE room = ? AND seq <= ?",
                (room, max(last - max(keep, 1), 0)),
            ).rowcount
        if before_ms is not None:
            deleted += self._db.execute(
                "DELETE FROM events WHERE room = ? AND time_ms < ? AND seq < ?",
                (room, before_ms, last),
            ).rowcount
        return deleted

    # Reading

    def last_seq(self, room: str) -> int:
        """The highest stored sequence number of C{room}, 0 when none."""
        ((seq,),) = self._db.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE room = ?", (room,)
        )
        return seq

    def present(self, room: str) -> list[str]:
        """The C{nick!user@host} of everyone the stored history of C{room}
        shows in it (joined, and not yet parted, quit or kicked), in the
        order they joined.

        Read from the C{present} table, which L{append} keeps in the same
        transaction as the events: one indexed read, however long the
        history (and pruning does not change it).  A database upgraded
        from schema 3 starts with nobody present.
        """
        return [
            source
            for (source,) in self._db.execute(
                "SELECT source FROM present WHERE room = ? ORDER BY seq", (room,)
            )
        ]

    def topic(self, room: str) -> Topic:
        """The stored topic of C{room}."""
        row = self._db.execute(
            "SELECT topic, topic_setter, topic_time_ms FROM rooms WHERE room = ?",
            (room,),
        ).fetchone()
        return Topic(*row) if row else Topic()

    def rooms(self) -> list[tuple[str, str]]:
        """Every hosted room as C{(key, name)}."""
        return self._db.execute(
            "SELECT room, name FROM rooms WHERE hosted = 1 ORDER BY room"
        ).fetchall()

    def opened_rooms(self) -> list[str]:
        """The names of the hosted rooms that users opened."""
        return [
            name
            for (name,) in self._db.execute(
                "SELECT name FROM rooms WHERE hosted = 1 AND opened = 1 ORDER BY room"
            )
        ]

    def room_record(self, key: str) -> RoomRecord:
        """What is stored about room C{key} besides its events."""
        row = self._db.execute(
            "SELECT topic, topic_setter, topic_time_ms, opened, modes, channel_key,"
            " created_ms, member_limit, bans FROM rooms WHERE room = ?",
            (key,),
        ).fetchone()
        if row is None:
            return RoomRecord()
        bans = tuple(
            (mask, setter, time_ms) for mask, setter, time_ms in json.loads(row[8])
        )
        return RoomRecord(Topic(*row[:3]), bool(row[3]), *row[4:8], bans)

    def last_event_ms(self, key: str) -> int:
        """When room C{key} last had an event (0 when never)."""
        ((time_ms,),) = self._db.execute(
            "SELECT COALESCE(MAX(time_ms), 0) FROM events WHERE room = ?", (key,)
        )
        return time_ms

    def seq_at(self, room: str, time_ms: int, after: bool) -> int:
        """Translate a time into a sequence position for range queries.

        With C{after}, the last sequence number stored at or before
        C{time_ms} (so "after it" means after that time); otherwise the first
        one at or after C{time_ms} (so "before it" means before that time).
        Both ends are exclusive, as IRCv3 chathistory asks.
        """
        if after:
            ((seq,),) = self._db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM events"
                " WHERE room = ? AND time_ms <= ?",
                (room, time_ms),
            )
        else:
            ((seq,),) = self._db.execute(
                "SELECT COALESCE(MIN(seq), ?) FROM events"
                " WHERE room = ? AND time_ms >= ?",
                (self.last_seq(room) + 1, room, time_ms),
            )
        return seq

    def between(
        self,
        room: str,
        after: int,
        before: int,
        limit: int,
        newest: bool,
        messages_only: bool,
    ) -> list[Event]:
        """Events with C{after < seq < before}, oldest first.

        @param limit: the most events to return.
        @param newest: take the C{limit} newest of the range, rather than
            the C{limit} oldest.
        @param messages_only: only C{PRIVMSG} and C{NOTICE} events.
        """
        where = "room = ? AND seq > ? AND seq < ?"
        if messages_only:
            where += " AND command IN ('PRIVMSG', 'NOTICE')"
        order = "DESC" if newest else "ASC"
        rows = self._db.execute(
            "SELECT %s FROM events WHERE %s ORDER BY seq %s LIMIT ?"
            % (_COLUMNS, where, order),
            (room, after, before, limit),
        ).fetchall()
        if newest:
            rows.reverse()
        return [_event_from_row(row) for row in rows]


class ReservedCounter:
    """A strictly increasing counter that survives crashes and clock jumps.

    Values are reserved from the store in blocks, and each block is
    committed before its first value is handed out, so no value is ever
    given twice, even across C{kill -9}.  A crash skips the rest of a block,
    which is harmless: only increase matters.  Never derived from a clock.
    """

    def __init__(self, store: HistoryStore, name: str, block: int = 64) -> None:
        self._store = store
        self._name = name
        self._block = block
        self._next = self._end = 0

    def __call__(self) -> int:
        """The next value."""
        if self._next >= self._end:
            self._next = self._store.reserve_counter(self._name, self._block)
            self._end = self._next + self._block
        value = self._next
        self._next += 1
        return value
