-- A recording of a call (or a plain room) and its files: one per
-- participant (camera + microphone) and per screen share.
CREATE TABLE recordings (
    id          TEXT PRIMARY KEY,
    room        TEXT NOT NULL,
    call_id     TEXT REFERENCES calls(id),
    started_by  INTEGER REFERENCES agents(id),
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    -- recording | finished | failed | interrupted (the server stopped mid-way)
    status      TEXT NOT NULL,
    error       TEXT
);
CREATE INDEX recordings_by_call ON recordings(call_id);
CREATE INDEX recordings_by_start ON recordings(started_at);

CREATE TABLE recording_files (
    id           TEXT PRIMARY KEY,
    recording_id TEXT NOT NULL REFERENCES recordings(id) ON DELETE CASCADE,
    -- relative to the recordings directory
    path         TEXT NOT NULL UNIQUE,
    identity     TEXT NOT NULL,
    screen       INTEGER NOT NULL,
    -- when its first frame was after the recording's first file's
    offset_ms    INTEGER NOT NULL,
    duration_ms  INTEGER NOT NULL DEFAULT 0,
    bytes        INTEGER NOT NULL DEFAULT 0,
    gaps         INTEGER NOT NULL DEFAULT 0,
    -- recording | finished | failed | interrupted
    status       TEXT NOT NULL,
    error        TEXT,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX recording_files_by_recording ON recording_files(recording_id);
