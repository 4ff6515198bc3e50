-- The checkpointer starts the write-ahead log over itself (sqlite/checkpoint.rs): the
-- first commit of a new log syncs the log's header, and the checkpointer makes that commit
-- with this counter, while it holds the writer, so that no store call waits for the sync.
CREATE TABLE wal_restarts (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    count INTEGER NOT NULL
);
INSERT INTO wal_restarts (id, count) VALUES (1, 0);
