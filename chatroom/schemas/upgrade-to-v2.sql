-- Upgrade a version 1 history store to version 2: rooms opened by users
-- (--open-rooms) with their modes.  Run inside one transaction by
-- chatroom.history, which also updates the version row.
ALTER TABLE rooms ADD COLUMN opened INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rooms ADD COLUMN hosted INTEGER NOT NULL DEFAULT 1;
ALTER TABLE rooms ADD COLUMN modes TEXT NOT NULL DEFAULT '';
ALTER TABLE rooms ADD COLUMN channel_key TEXT NOT NULL DEFAULT '';
ALTER TABLE rooms ADD COLUMN created_ms INTEGER NOT NULL DEFAULT 0;
