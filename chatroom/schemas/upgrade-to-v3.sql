-- Upgrade a version 2 history store to version 3: the member limit (+l)
-- and the ban list (+b) of each room.  Run inside one transaction by
-- chatroom.history, which also updates the version row.
ALTER TABLE rooms ADD COLUMN member_limit INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rooms ADD COLUMN bans TEXT NOT NULL DEFAULT '[]';
-- +n becomes a mode that operators may remove; every room was +n before.
UPDATE rooms SET modes = modes || 'n';
