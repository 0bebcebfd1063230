"""Tests for chatroom.history: the SQLite store."""

import json
import os
import sqlite3

from hypothesis import given, strategies as st

from twisted.trial.unittest import SynchronousTestCase

from chatroom.core.room import Event, Topic
from chatroom.errors import HistoryStoreError
from chatroom.history import SCHEMA_VERSION, HistoryStore, json_strings


def message(seq, time_ms=None, room="lobby", command="PRIVMSG", text=None):
    """A stored-form event."""
    return Event(
        room=room,
        seq=seq,
        time_ms=seq * 1000 if time_ms is None else time_ms,
        command=command,
        source="a!u@h",
        params=("#lobby", text or "m%d" % (seq,)),
        client_tags={"+x": "y"},
    )


class HistoryStoreTests(SynchronousTestCase):
    """Appending, reading ranges, pruning, counters."""

    def setUp(self):
        self.store = HistoryStore(":memory:")
        self.store.add_room("lobby", "Lobby")
        self.addCleanup(self.store.close)

    def seqs(self, events):
        return [e.seq for e in events]

    def test_append_and_read_back(self):
        """Events come back equal in every stored field."""
        self.store.append([message(1), message(2)])
        self.assertEqual(self.store.last_seq("lobby"), 2)
        (first, second) = self.store.between("lobby", 0, 10, 10, False, True)
        self.assertEqual(
            (
                first.seq,
                first.time_ms,
                first.command,
                first.source,
                first.params,
                first.client_tags,
            ),
            (1, 1000, "PRIVMSG", "a!u@h", ("#lobby", "m1"), {"+x": "y"}),
        )
        self.assertEqual(second.seq, 2)

    def test_unsequenced_not_stored(self):
        self.store.append(
            [
                Event(
                    room=None,
                    seq=None,
                    time_ms=0,
                    command="NICK",
                    source="a!u@h",
                    params=("b",),
                )
            ]
        )
        self.assertEqual(self.store.last_seq("lobby"), 0)

    def test_append_is_atomic(self):
        """A batch with a duplicate sequence number stores nothing."""
        self.store.append([message(1)])
        self.assertRaises(
            sqlite3.IntegrityError, self.store.append, [message(2), message(1)]
        )
        self.assertEqual(self.store.last_seq("lobby"), 1)

    def test_ranges(self):
        self.store.append([message(n) for n in range(1, 11)])
        between = self.store.between
        self.assertEqual(self.seqs(between("lobby", 0, 11, 3, True, True)), [8, 9, 10])
        self.assertEqual(self.seqs(between("lobby", 0, 11, 3, False, True)), [1, 2, 3])
        self.assertEqual(self.seqs(between("lobby", 4, 8, 10, False, True)), [5, 6, 7])

    def test_messages_only(self):
        self.store.append([message(1), message(2, command="JOIN"), message(3)])
        self.assertEqual(
            self.seqs(self.store.between("lobby", 0, 9, 9, False, True)), [1, 3]
        )
        self.assertEqual(
            self.seqs(self.store.between("lobby", 0, 9, 9, False, False)), [1, 2, 3]
        )

    def test_seq_at(self):
        self.store.append([message(1, 100), message(2, 200), message(3, 300)])
        self.assertEqual(self.store.seq_at("lobby", 200, after=True), 2)
        self.assertEqual(self.store.seq_at("lobby", 199, after=True), 1)
        self.assertEqual(self.store.seq_at("lobby", 200, after=False), 2)
        self.assertEqual(self.store.seq_at("lobby", 999, after=False), 4)

    def test_topic(self):
        self.store.append([message(1, command="TOPIC", text="news")])
        self.assertEqual(self.store.topic("lobby"), Topic("news", "a!u@h", 1000))
        self.assertEqual(self.store.topic("other"), Topic())

    def test_prune_keeps_newest(self):
        """Pruning never removes a room's newest event (its numbering)."""
        self.store.append([message(n) for n in range(1, 6)])
        self.assertEqual(self.store.prune("lobby", 2, None), 3)
        self.assertEqual(self.store.prune("lobby", None, 10**9), 1)
        self.assertEqual(self.store.last_seq("lobby"), 5)
        self.assertEqual(self.store.prune("lobby", 0, None), 0)

    def test_counter(self):
        self.assertEqual(self.store.reserve_counter("T", 10), 1)
        self.assertEqual(self.store.reserve_counter("T", 10), 11)


def membership(seq, command, source, *params, room="lobby"):
    """A stored-form membership event (C{seq} C{None}: unsequenced)."""
    return Event(
        room=room if seq is not None else None,
        seq=seq,
        time_ms=(seq or 0) * 1000,
        command=command,
        source=source,
        params=params,
    )


class PresentTests(SynchronousTestCase):
    """The store knows who its history shows in each room, without
    replaying it: the C{present} table follows every membership event."""

    def setUp(self):
        self.store = HistoryStore(":memory:")
        self.store.add_room("lobby", "lobby")
        self.store.add_room("dev", "dev")
        self.addCleanup(self.store.close)

    def test_join_part_quit_kick(self):
        self.store.append(
            [
                membership(1, "JOIN", "alice!~a@h", "#lobby"),
                membership(2, "JOIN", "Bob!~b@h", "#lobby"),
                membership(3, "JOIN", "carol!~c@h", "#lobby"),
                membership(4, "JOIN", "dave!~d@h", "#lobby"),
                message(5),
            ]
        )
        self.assertEqual(
            self.store.present("lobby"),
            ["alice!~a@h", "Bob!~b@h", "carol!~c@h", "dave!~d@h"],
        )
        self.store.append(
            [
                membership(6, "PART", "alice!~a@h", "#lobby", "bye"),
                # The target of a KICK leaves, whatever its nick's case.
                membership(7, "KICK", "carol!~c@h", "#lobby", "BOB", "out"),
                membership(8, "QUIT", "dave!~d@h", "Quit: gone"),
            ]
        )
        self.assertEqual(self.store.present("lobby"), ["carol!~c@h"])
        self.assertEqual(self.store.present("dev"), [])

    def test_join_and_part_in_one_turn(self):
        """Changes apply in the events' order within one append."""
        self.store.append(
            [
                membership(1, "JOIN", "alice!~a@h", "#lobby"),
                membership(2, "PART", "alice!~a@h", "#lobby"),
                membership(3, "JOIN", "bob!~b@h", "#lobby"),
                membership(4, "QUIT", "bob!~b@h", "x"),
                membership(5, "JOIN", "bob!~b@h", "#lobby"),
            ]
        )
        self.assertEqual(self.store.present("lobby"), ["bob!~b@h"])

    def test_nick_change_in_every_room(self):
        """Nick changes are not stored, but the member keeps its place
        under its new nick in every room, so its QUIT still finds it."""
        self.store.append(
            [
                membership(1, "JOIN", "alice!~a@h", "#lobby"),
                membership(1, "JOIN", "alice!~a@h", "#dev", room="dev"),
                membership(None, "NICK", "alice!~a@h", "Alicia"),
            ]
        )
        self.assertEqual(self.store.last_seq("lobby"), 1)
        self.assertEqual(self.store.present("lobby"), ["Alicia!~a@h"])
        self.assertEqual(self.store.present("dev"), ["Alicia!~a@h"])
        self.store.append([membership(2, "QUIT", "Alicia!~a@h", "bye")])
        self.assertEqual(self.store.present("lobby"), [])
        self.assertEqual(self.store.present("dev"), ["Alicia!~a@h"])

    def test_not_stored_not_present(self):
        """A failed append changes nobody's presence."""
        self.store.append([membership(1, "JOIN", "alice!~a@h", "#lobby")])
        self.assertRaises(
            sqlite3.IntegrityError,
            self.store.append,
            [
                membership(2, "JOIN", "bob!~b@h", "#lobby"),
                membership(1, "PART", "alice!~a@h", "#lobby"),
            ],
        )
        self.assertEqual(self.store.present("lobby"), ["alice!~a@h"])

    def test_survives_pruning(self):
        self.store.append(
            [membership(1, "JOIN", "alice!~a@h", "#lobby")]
            + [message(n) for n in range(2, 10)]
        )
        self.store.prune("lobby", 1, None)
        self.assertEqual(self.store.present("lobby"), ["alice!~a@h"])

    def test_removed_room_has_nobody(self):
        self.store.append([membership(1, "JOIN", "alice!~a@h", "#lobby")])
        self.store.remove_room("lobby")
        self.assertEqual(self.store.present("lobby"), [])

    def test_persists(self):
        path = self.mktemp()
        store = HistoryStore(path)
        store.add_room("lobby", "lobby")
        store.append([membership(1, "JOIN", "alice!~a@h", "#lobby")])
        store.close()
        store = HistoryStore(path)
        self.addCleanup(store.close)
        self.assertEqual(store.present("lobby"), ["alice!~a@h"])


class JSONStringsTests(SynchronousTestCase):
    """The fast encoder of stored parameters writes what json.dumps does."""

    @given(st.lists(st.text()).map(tuple))
    def test_same_as_json_dumps(self, strings):
        encoded = json_strings(strings)
        self.assertEqual(encoded, json.dumps(strings))
        self.assertEqual(tuple(json.loads(encoded)), strings)

    def test_round_trip_through_the_store(self):
        """Unicode, quotes and control characters come back as they went."""
        store = HistoryStore(":memory:")
        self.addCleanup(store.close)
        text = 'caf\u00e9 "quoted" \\ \t \U0001f600'
        event = Event(
            room="lobby",
            seq=1,
            time_ms=1000,
            command="PRIVMSG",
            source="a!u@h",
            params=("#lobby", text),
        )
        store.add_room("lobby", "Lobby")
        store.append([event])
        (stored,) = store.between("lobby", 0, 10, 10, False, True)
        self.assertEqual(stored.params, ("#lobby", text))
        self.assertEqual(stored.client_tags, {})


class FileTests(SynchronousTestCase):
    """The database file: creation, reopening, versions."""

    def setUp(self):
        self.path = os.path.join(self.mktemp() + ".sqlite3")

    def test_persists(self):
        store = HistoryStore(self.path)
        store.add_room("lobby", "lobby")
        store.append([message(1)])
        store.reserve_counter("T", 5)
        store.close()
        store = HistoryStore(self.path)
        self.addCleanup(store.close)
        self.assertEqual(store.last_seq("lobby"), 1)
        self.assertEqual(store.reserve_counter("T", 1), 6)
        self.assertEqual(store.rooms(), [("lobby", "lobby")])
        self.assertFalse(os.path.exists(self.path + ".new"))

    def test_newer_schema_refused(self):
        HistoryStore(self.path).close()
        db = sqlite3.connect(self.path)
        db.execute("UPDATE version SET version = ?", (SCHEMA_VERSION + 1,))
        db.commit()
        db.close()
        error = self.assertRaises(HistoryStoreError, HistoryStore, self.path)
        self.assertIn("newer chatroom", str(error))

    def test_garbage_file_refused(self):
        with open(self.path, "wb") as f:
            f.write(b"this is not a database" * 100)
        error = self.assertRaises(HistoryStoreError, HistoryStore, self.path)
        self.assertIn("Move it away", str(error))


def old_database(path, version):
    """A new database at C{path} made by the schema file of C{version}
    (C{chatroom/schemas/history-vN.sql}), open, for an upgrade test."""
    from importlib import resources

    db = sqlite3.connect(path)
    db.executescript(
        resources.files("chatroom.schemas")
        .joinpath("history-v%d.sql" % (version,))
        .read_text("utf-8")
    )
    return db


class UpgradeTests(SynchronousTestCase):
    """A version 1 database is upgraded in place, keeping everything."""

    def test_v1_to_current(self):
        path = self.mktemp()
        db = old_database(path, 1)
        db.execute(
            "INSERT INTO rooms (room, name, topic) VALUES ('lobby', 'Lobby', 't')"
        )
        db.execute(
            "INSERT INTO events VALUES ('lobby', 7, 1000, 'PRIVMSG', 'a!u@h', ?, '{}')",
            ('["#Lobby", "hi"]',),
        )
        db.commit()
        db.close()
        store = HistoryStore(path)
        self.addCleanup(store.close)
        ((version,),) = store._db.execute("SELECT version FROM version")
        self.assertEqual(version, SCHEMA_VERSION)
        self.assertEqual(store.last_seq("lobby"), 7)
        record = store.room_record("lobby")
        # Every room was +n before version 3 made it a mode.
        self.assertEqual(
            (record.topic.text, record.opened, record.modes), ("t", False, "n")
        )
        self.assertEqual((record.member_limit, record.bans), (0, ()))
        self.assertEqual(store.rooms(), [("lobby", "Lobby")])
        store.set_modes("lobby", "m", "", 3, [("x!*@*", "op!u@h", 9)])
        record = store.room_record("lobby")
        self.assertEqual(
            (record.member_limit, record.bans), (3, (("x!*@*", "op!u@h", 9),))
        )

    def test_v3_to_current(self):
        """A version 3 database gains the present table, empty: a version 3
        history cannot say reliably who is in a room."""
        path = self.mktemp()
        db = old_database(path, 3)
        db.execute("INSERT INTO rooms (room, name) VALUES ('lobby', 'lobby')")
        db.execute(
            "INSERT INTO events VALUES ('lobby', 7, 1000, 'JOIN', 'a!u@h', ?, '{}')",
            ('["#lobby"]',),
        )
        db.commit()
        db.close()
        store = HistoryStore(path)
        self.addCleanup(store.close)
        ((version,),) = store._db.execute("SELECT version FROM version")
        self.assertEqual(version, SCHEMA_VERSION)
        self.assertEqual(store.present("lobby"), [])
        store.append(
            [
                Event(
                    room="lobby",
                    seq=8,
                    time_ms=2000,
                    command="JOIN",
                    source="b!u@h",
                    params=("#lobby",),
                )
            ]
        )
        self.assertEqual(store.present("lobby"), ["b!u@h"])

    def test_copy_kept_before_upgrade(self):
        """The version 1 file is copied next to the database, as it was,
        before anything changes, and the log says where."""
        from twisted.logger import globalLogPublisher

        from chatroom.history import backup_path

        path = os.path.abspath(self.mktemp())
        self.make_v1(path)
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        store = HistoryStore(path)
        self.addCleanup(store.close)
        copy = backup_path(path, 1)
        self.assertEqual(copy, path + ".schema-v1.backup")
        db = sqlite3.connect(copy)
        self.addCleanup(db.close)
        self.assertEqual(db.execute("SELECT version FROM version").fetchall(), [(1,)])
        self.assertEqual(db.execute("SELECT seq FROM events").fetchall(), [(7,)])
        self.assertNotIn(
            "modes", [row[1] for row in db.execute("PRAGMA table_info(rooms)")]
        )
        said = [e for e in events if e.get("copy") == copy]
        self.assertEqual(len(said), 1)
        # Opening the upgraded file again makes no new copy.
        store.close()
        os.remove(copy)
        HistoryStore(path).close()
        self.assertFalse(os.path.exists(copy))

    def test_no_copy_no_upgrade(self):
        """When the copy cannot be written, the database is left as it was
        and the error is one sentence."""
        path = os.path.abspath(self.mktemp())
        self.make_v1(path)
        os.makedirs(path + ".schema-v1.backup.new")  # the copy cannot go there
        error = self.assertRaises(HistoryStoreError, HistoryStore, path)
        self.assertIn("no copy of it could be kept", str(error))
        db = sqlite3.connect(path)
        self.addCleanup(db.close)
        self.assertEqual(db.execute("SELECT version FROM version").fetchall(), [(1,)])

    def test_failed_upgrade_is_one_sentence(self):
        """An upgrade step that fails leaves the database as it was."""
        path = os.path.abspath(self.mktemp())
        self.make_v1(path)
        db = sqlite3.connect(path)
        # A column the upgrade adds already exists: its ALTER TABLE fails.
        db.execute("ALTER TABLE rooms ADD COLUMN modes TEXT NOT NULL DEFAULT ''")
        db.commit()
        db.close()
        error = self.assertRaises(HistoryStoreError, HistoryStore, path)
        self.assertIn("could not be upgraded from schema 1", str(error))
        db = sqlite3.connect(path)
        self.addCleanup(db.close)
        self.assertEqual(db.execute("SELECT version FROM version").fetchall(), [(1,)])
        # The steps before the failing one were rolled back too.
        self.assertNotIn(
            "opened", [row[1] for row in db.execute("PRAGMA table_info(rooms)")]
        )

    def make_v1(self, path):
        db = old_database(path, 1)
        db.execute(
            "INSERT INTO events VALUES ('lobby', 7, 1000, 'PRIVMSG', 'a!u@h', ?, '{}')",
            ('["#Lobby", "hi"]',),
        )
        db.commit()
        db.close()


class OpenedRoomTests(SynchronousTestCase):
    """Rooms users opened: remembered with their modes, removable."""

    def setUp(self):
        self.store = HistoryStore(":memory:")
        self.addCleanup(self.store.close)

    def test_record(self):
        self.store.add_room("fun", "Fun", opened=True, now_ms=5000)
        self.store.set_modes("fun", "it", "secret")
        record = self.store.room_record("fun")
        self.assertEqual(
            (record.opened, record.modes, record.channel_key, record.created_ms),
            (True, "it", "secret", 5000),
        )
        self.assertEqual(self.store.opened_rooms(), ["Fun"])

    def test_remove_keeps_numbering(self):
        self.store.add_room("lobby", "lobby", opened=True)
        self.store.append([message(n) for n in range(1, 4)])
        self.assertEqual(self.store.last_event_ms("lobby"), 3000)
        self.store.remove_room("lobby")
        self.assertEqual(self.store.rooms(), [])
        self.assertEqual(self.store.opened_rooms(), [])
        self.assertEqual(self.store.last_seq("lobby"), 3)
        self.assertEqual(len(self.store.between("lobby", 0, 9, 9, False, False)), 1)
        self.store.add_room("lobby", "lobby")
        self.assertEqual(self.store.rooms(), [("lobby", "lobby")])


class InterfaceTests(SynchronousTestCase):
    """HistoryStore provides everything IHistoryStore promises the host."""

    def test_verify(self):
        from zope.interface.verify import verifyObject

        from chatroom.interfaces import IHistoryStore

        store = HistoryStore(":memory:")
        self.addCleanup(store.close)
        self.assertTrue(verifyObject(IHistoryStore, store))


class FileModeTests(SynchronousTestCase):
    """The history is readable by its owner only, like the key file."""

    def setUp(self):
        # What a login shell usually has: new files 0644 unless asked.
        self.addCleanup(os.umask, os.umask(0o022))
        self.data_dir = self.mktemp()
        os.mkdir(self.data_dir, 0o755)
        os.chmod(self.data_dir, 0o755)
        self.path = os.path.join(self.data_dir, "history.sqlite3")

    def mode(self, path):
        return os.stat(path).st_mode & 0o777

    def test_new_database_and_wal_are_0600(self):
        """In a 0755 directory, the database chatroom creates is 0600, and
        so are the -wal and -shm files SQLite makes with its mode."""
        store = HistoryStore(self.path)
        self.addCleanup(store.close)
        store.append([message(1)])
        self.assertEqual(self.mode(self.path), 0o600)
        self.assertEqual(self.mode(self.path + "-wal"), 0o600)
        self.assertEqual(self.mode(self.path + "-shm"), 0o600)

    def test_upgrade_backup_is_0600(self):
        """The copy kept before a schema upgrade holds the same history."""
        from chatroom.history import _backup

        store = HistoryStore(self.path)
        self.addCleanup(store.close)
        copy = _backup(store._db, self.path, SCHEMA_VERSION)
        self.assertEqual(self.mode(copy), 0o600)

    def test_loose_existing_database_warned_not_changed(self):
        """An existing database others may read: one warning at start
        with the fix; the mode is the operator's to change."""
        from twisted.logger import LogLevel, globalLogPublisher

        HistoryStore(self.path).close()
        os.chmod(self.path, 0o644)
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        HistoryStore(self.path).close()
        warnings = [e for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["path"], self.path)
        self.assertIn("chmod 600", warnings[0]["log_format"])
        self.assertEqual(self.mode(self.path), 0o644)
        # A 0600 database is opened without a word.
        os.chmod(self.path, 0o600)
        del events[:]
        HistoryStore(self.path).close()
        self.assertEqual([e for e in events if e.get("log_level") == LogLevel.warn], [])
