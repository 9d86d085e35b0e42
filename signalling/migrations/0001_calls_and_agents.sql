-- Agents sign in to the console; calls are customers' requests and their outcome.
CREATE TABLE agents (
    id            INTEGER PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE calls (
    id            TEXT PRIMARY KEY,
    customer_name TEXT NOT NULL,
    topic         TEXT NOT NULL DEFAULT '',
    room          TEXT NOT NULL,
    -- queued | accepted | ended | cancelled | missed
    status        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    accepted_at   INTEGER,
    ended_at      INTEGER,
    agent_id      INTEGER REFERENCES agents(id)
);
CREATE INDEX calls_by_status ON calls(status, created_at);

-- Agents invited into a call by the agent who took it.
CREATE TABLE invites (
    call_id    TEXT NOT NULL REFERENCES calls(id),
    agent_id   INTEGER NOT NULL REFERENCES agents(id),
    invited_by INTEGER NOT NULL REFERENCES agents(id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (call_id, agent_id)
);
