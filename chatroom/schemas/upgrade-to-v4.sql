-- Upgrade a version 3 history store to version 4: the members each room's
-- history shows present, so a restart after a crash can record their QUIT.
-- It starts empty: a version 3 history cannot say reliably who was present
-- (nick changes were never stored).  Run inside one transaction by
-- chatroom.history, which also updates the version row.
CREATE TABLE present (
    room TEXT NOT NULL,
    nick TEXT NOT NULL,
    source TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (room, nick)
) WITHOUT ROWID;
