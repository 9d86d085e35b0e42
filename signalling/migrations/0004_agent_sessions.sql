-- Agent sign-ins, server-side: the session cookie's token names one of
-- these, and it counts only while the row is neither revoked (sign-out, a
-- new password) nor expired.
CREATE TABLE agent_sessions (
    id TEXT PRIMARY KEY,
    agent_id INTEGER NOT NULL REFERENCES agents(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX agent_sessions_agent ON agent_sessions(agent_id);
