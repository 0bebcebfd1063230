-- chatroom history store, schema version 4.
-- Applied to a new, empty database inside one transaction; the file is then
-- renamed into place, so a half-created database is never seen.

CREATE TABLE version (
    version INTEGER NOT NULL
);
INSERT INTO version (version) VALUES (4);

-- Every sequenced event of every room this host serves.  (room, seq) is the
-- event's identity; seq is never reused, even after pruning, because the
-- newest event of each room is always kept.
CREATE TABLE events (
    room TEXT NOT NULL,           -- folded room name, without '#'
    seq INTEGER NOT NULL,         -- the room's sequence number, from 1
    time_ms INTEGER NOT NULL,     -- when the host accepted it, ms since epoch
    command TEXT NOT NULL,        -- PRIVMSG, NOTICE, JOIN, PART, QUIT, TOPIC
    source TEXT NOT NULL,         -- nick!user@host
    params TEXT NOT NULL,         -- JSON array of IRC parameters
    tags TEXT NOT NULL,           -- JSON object of client-only tags
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;

CREATE INDEX events_by_time ON events (room, time_ms);

-- Per-room state that is not an event: topic, modes, who opened it.
CREATE TABLE rooms (
    room TEXT PRIMARY KEY,
    name TEXT NOT NULL,           -- the room name as first spelled
    topic TEXT NOT NULL DEFAULT '',
    topic_setter TEXT NOT NULL DEFAULT '',
    topic_time_ms INTEGER NOT NULL DEFAULT 0,
    opened INTEGER NOT NULL DEFAULT 0,       -- 1: a user opened it
    hosted INTEGER NOT NULL DEFAULT 1,       -- 0: removed (expired)
    modes TEXT NOT NULL DEFAULT 'n',         -- flag modes, e.g. 'int'
    channel_key TEXT NOT NULL DEFAULT '',    -- the +k key, '' for none
    created_ms INTEGER NOT NULL DEFAULT 0,
    member_limit INTEGER NOT NULL DEFAULT 0, -- the +l limit, 0 for none
    bans TEXT NOT NULL DEFAULT '[]'     -- JSON [[mask, setter, time_ms], ...]
);

-- Monotonic counters, such as the announcement number T of discovery.
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

-- Who the stored history shows in each room: a row per member whose JOIN
-- has no PART, QUIT or KICK after it yet.  Written by the same transaction
-- as the events that change it, so it always agrees with them.  When the
-- host opens a room, every row left over (the host was killed before its
-- members could leave) gets a QUIT event "Host restarted".
CREATE TABLE present (
    room TEXT NOT NULL,           -- folded room name, as in events
    nick TEXT NOT NULL,           -- folded nick: one row per nick per room
    source TEXT NOT NULL,         -- nick!user@host it last had (nick changes)
    seq INTEGER NOT NULL,         -- the sequence number of its JOIN
    PRIMARY KEY (room, nick)
) WITHOUT ROWID;
