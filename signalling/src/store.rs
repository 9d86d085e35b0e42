//! Durable records in SQLite (the data dir's `switchboard.db`): agents, call
//! requests and invitations. State changes that can race (two agents
//! accepting one call) are single conditional UPDATEs, so the database
//! decides the winner.

use std::path::Path;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::FromRow;

pub const DB_FILE: &str = "switchboard.db";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    Queued,
    Accepted,
    Ended,
    Cancelled,
    /// Queued longer than the configured timeout.
    Missed,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Accepted => "accepted",
            CallStatus::Ended => "ended",
            CallStatus::Cancelled => "cancelled",
            CallStatus::Missed => "missed",
        }
    }

    /// A live call's room may be joined with its tokens.
    pub fn is_live(self) -> bool {
        matches!(self, CallStatus::Queued | CallStatus::Accepted)
    }
}

impl FromStr for CallStatus {
    type Err = sqlx::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" => CallStatus::Queued,
            "accepted" => CallStatus::Accepted,
            "ended" => CallStatus::Ended,
            "cancelled" => CallStatus::Cancelled,
            "missed" => CallStatus::Missed,
            other => return Err(sqlx::Error::Decode(format!("unknown call status {other:?}").into())),
        })
    }
}

/// A call request and what became of it. Times are Unix milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    pub id: String,
    pub customer_name: String,
    pub topic: String,
    pub room: String,
    pub status: CallStatus,
    pub created_at: i64,
    pub accepted_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub agent_id: Option<i64>,
    /// The accepting agent's email, when there is one.
    pub agent: Option<String>,
}

#[derive(FromRow)]
struct CallRow {
    id: String,
    customer_name: String,
    topic: String,
    room: String,
    status: String,
    created_at: i64,
    accepted_at: Option<i64>,
    ended_at: Option<i64>,
    agent_id: Option<i64>,
    agent: Option<String>,
}

impl TryFrom<CallRow> for Call {
    type Error = sqlx::Error;
    fn try_from(r: CallRow) -> Result<Self, Self::Error> {
        Ok(Call {
            status: r.status.parse()?,
            id: r.id,
            customer_name: r.customer_name,
            topic: r.topic,
            room: r.room,
            created_at: r.created_at,
            accepted_at: r.accepted_at,
            ended_at: r.ended_at,
            agent_id: r.agent_id,
            agent: r.agent,
        })
    }
}

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct Agent {
    pub id: i64,
    pub email: String,
    /// Shown to customers and in calls; the e-mail when unset.
    pub name: Option<String>,
    #[serde(skip)]
    pub password_hash: String,
}

/// A search of the call history: text in the customer's name, the topic or
/// the agent's name or e-mail; created in [from, to) (ms); older than the
/// `before` (created_at, id) of the last row of the previous page.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub text: String,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

const CALL_COLUMNS: &str = "SELECT c.id, c.customer_name, c.topic, c.room, c.status, c.created_at, c.accepted_at, \
     c.ended_at, c.agent_id, COALESCE(a.name, a.email) AS agent FROM calls c LEFT JOIN agents a ON a.id = c.agent_id";

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Why the records could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("creating {0}: {1}")]
    Dir(std::path::PathBuf, std::io::Error),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("migrating: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl Store {
    /// The pool, for the modules that keep their own tables (recordings).
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Opens (creating if needed) the database in `data_dir` and migrates it.
    pub async fn open(data_dir: &Path) -> Result<Store, OpenError> {
        std::fs::create_dir_all(data_dir).map_err(|e| OpenError::Dir(data_dir.to_path_buf(), e))?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join(DB_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    // ---- agents ------------------------------------------------------------

    pub async fn add_agent(&self, email: &str, name: Option<&str>, password_hash: &str) -> Result<i64, sqlx::Error> {
        let r = sqlx::query("INSERT INTO agents (email, name, password_hash, created_at) VALUES (?, ?, ?, ?)")
            .bind(email)
            .bind(name)
            .bind(password_hash)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(r.last_insert_rowid())
    }

    /// A new password; false if there is no such agent. Every session the
    /// agent has is revoked: whoever knew the old password is signed out.
    pub async fn set_password(&self, email: &str, password_hash: &str) -> Result<bool, sqlx::Error> {
        let Some(agent) = self.agent_by_email(email).await? else { return Ok(false) };
        sqlx::query("UPDATE agents SET password_hash = ? WHERE id = ?")
            .bind(password_hash)
            .bind(agent.id)
            .execute(&self.pool)
            .await?;
        sqlx::query("UPDATE agent_sessions SET revoked_at = ? WHERE agent_id = ? AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(agent.id)
            .execute(&self.pool)
            .await?;
        Ok(true)
    }

    // ---- agent sessions ------------------------------------------------------

    /// A new sign-in for `agent`, good for `ttl`; returns its id.
    pub async fn create_session(&self, agent: i64, ttl: std::time::Duration) -> Result<String, sqlx::Error> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let now = now_ms();
        sqlx::query("INSERT INTO agent_sessions (id, agent_id, created_at, expires_at) VALUES (?, ?, ?, ?)")
            .bind(&id)
            .bind(agent)
            .bind(now)
            .bind(now + ttl.as_millis() as i64)
            .execute(&self.pool)
            .await?;
        Ok(id)
    }

    /// Whether session `id` of `agent` is neither revoked nor expired.
    pub async fn session_live(&self, id: &str, agent: i64) -> Result<bool, sqlx::Error> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT 1 FROM agent_sessions WHERE id = ? AND agent_id = ? AND revoked_at IS NULL AND expires_at > ?",
        )
        .bind(id)
        .bind(agent)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    pub async fn revoke_session(&self, id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE agent_sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets sessions that ended (expired or revoked) over a day ago.
    pub async fn forget_old_sessions(&self) -> Result<u64, sqlx::Error> {
        let day_ago = now_ms() - 24 * 3600 * 1000;
        let r = sqlx::query("DELETE FROM agent_sessions WHERE expires_at < ? OR revoked_at < ?")
            .bind(day_ago)
            .bind(day_ago)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    pub async fn agent_by_email(&self, email: &str) -> Result<Option<Agent>, sqlx::Error> {
        sqlx::query_as("SELECT id, email, name, password_hash FROM agents WHERE email = ?")
            .bind(email)
            .fetch_optional(&self.pool)
            .await
    }

    pub async fn agent(&self, id: i64) -> Result<Option<Agent>, sqlx::Error> {
        sqlx::query_as("SELECT id, email, name, password_hash FROM agents WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
    }

    pub async fn agents(&self) -> Result<Vec<Agent>, sqlx::Error> {
        sqlx::query_as("SELECT id, email, name, password_hash FROM agents ORDER BY email").fetch_all(&self.pool).await
    }

    /// Agents who accepted a call that is still live.
    pub async fn agents_in_live_calls(&self) -> Result<Vec<i64>, sqlx::Error> {
        let rows: Vec<(i64,)> =
            sqlx::query_as("SELECT DISTINCT agent_id FROM calls WHERE status = 'accepted' AND agent_id IS NOT NULL")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    // ---- calls -------------------------------------------------------------

    pub async fn create_call(
        &self,
        id: &str,
        customer_name: &str,
        topic: &str,
        room: &str,
    ) -> Result<Call, sqlx::Error> {
        sqlx::query(
            "INSERT INTO calls (id, customer_name, topic, room, status, created_at) VALUES (?, ?, ?, ?, 'queued', ?)",
        )
        .bind(id)
        .bind(customer_name)
        .bind(topic)
        .bind(room)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        self.call(id).await?.ok_or(sqlx::Error::RowNotFound)
    }

    pub async fn call(&self, id: &str) -> Result<Option<Call>, sqlx::Error> {
        let row: Option<CallRow> =
            sqlx::query_as(&format!("{CALL_COLUMNS} WHERE c.id = ?")).bind(id).fetch_optional(&self.pool).await?;
        row.map(Call::try_from).transpose()
    }

    /// Queued calls, oldest first (the order agents should take them).
    pub async fn queue(&self) -> Result<Vec<Call>, sqlx::Error> {
        self.calls_where("c.status = 'queued' ORDER BY c.created_at, c.id", 1000).await
    }

    /// Calls that are over, newest first.
    pub async fn history(&self, limit: i64) -> Result<Vec<Call>, sqlx::Error> {
        self.search_history(&HistoryQuery { limit, ..Default::default() }).await
    }

    /// Finished calls, newest first, matching `q` (see [`HistoryQuery`]).
    pub async fn search_history(&self, q: &HistoryQuery) -> Result<Vec<Call>, sqlx::Error> {
        // Keyset paging on (created_at, id): stable while new calls come in.
        let sql = format!(
            "{CALL_COLUMNS} WHERE c.status IN ('ended', 'cancelled', 'missed') \
             AND (?1 = '' OR c.customer_name LIKE ?1 ESCAPE '\\' OR c.topic LIKE ?1 ESCAPE '\\' \
                  OR a.email LIKE ?1 ESCAPE '\\' OR a.name LIKE ?1 ESCAPE '\\') \
             AND c.created_at >= ?2 AND c.created_at < ?3 \
             AND (c.created_at < ?4 OR (c.created_at = ?4 AND c.id < ?5)) \
             ORDER BY c.created_at DESC, c.id DESC LIMIT ?6"
        );
        let pattern = if q.text.trim().is_empty() {
            String::new()
        } else {
            let escaped = q.text.trim().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            format!("%{escaped}%")
        };
        let (before_at, before_id) = q.before.clone().unwrap_or((i64::MAX, String::new()));
        let rows: Vec<CallRow> = sqlx::query_as(&sql)
            .bind(pattern)
            .bind(q.from.unwrap_or(0))
            .bind(q.to.unwrap_or(i64::MAX))
            .bind(before_at)
            .bind(before_id)
            .bind(q.limit)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(Call::try_from).collect()
    }

    async fn calls_where(&self, clause: &str, limit: i64) -> Result<Vec<Call>, sqlx::Error> {
        let rows: Vec<CallRow> =
            sqlx::query_as(&format!("{CALL_COLUMNS} WHERE {clause} LIMIT ?")).bind(limit).fetch_all(&self.pool).await?;
        rows.into_iter().map(Call::try_from).collect()
    }

    /// 1-based place of a queued call in the queue.
    /// How many calls are waiting for an agent.
    pub async fn queued_calls(&self) -> Result<i64, sqlx::Error> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM calls WHERE status = 'queued'").fetch_one(&self.pool).await?;
        Ok(n)
    }

    pub async fn queue_position(&self, call: &Call) -> Result<i64, sqlx::Error> {
        let (ahead,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM calls WHERE status = 'queued' AND (created_at < ? OR (created_at = ? AND id < ?))",
        )
        .bind(call.created_at)
        .bind(call.created_at)
        .bind(&call.id)
        .fetch_one(&self.pool)
        .await?;
        Ok(ahead + 1)
    }

    /// Gives a queued call to `agent`; false if it was not queued any more
    /// (another agent was first, or the customer left).
    pub async fn accept(&self, id: &str, agent: i64) -> Result<bool, sqlx::Error> {
        let r = sqlx::query(
            "UPDATE calls SET status = 'accepted', agent_id = ?, accepted_at = ? WHERE id = ? AND status = 'queued'",
        )
        .bind(agent)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Closes a live call: an accepted one ends, a queued one is cancelled.
    /// Returns the new status, or None if the call was not live.
    pub async fn finish(&self, id: &str) -> Result<Option<CallStatus>, sqlx::Error> {
        let r = sqlx::query(
            "UPDATE calls SET ended_at = ?, status = CASE status WHEN 'accepted' THEN 'ended' ELSE 'cancelled' END \
             WHERE id = ? AND status IN ('queued', 'accepted') RETURNING status",
        )
        .bind(now_ms())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match r {
            Some(row) => Ok(Some(sqlx::Row::try_get::<String, _>(&row, 0)?.parse()?)),
            None => Ok(None),
        }
    }

    /// Marks calls queued since before `cutoff_ms` as missed; returns how many.
    pub async fn mark_missed(&self, cutoff_ms: i64) -> Result<u64, sqlx::Error> {
        let r =
            sqlx::query("UPDATE calls SET status = 'missed', ended_at = ? WHERE status = 'queued' AND created_at < ?")
                .bind(now_ms())
                .bind(cutoff_ms)
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected())
    }

    // ---- invitations -------------------------------------------------------

    pub async fn invite(&self, call: &str, agent: i64, by: i64) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT OR IGNORE INTO invites (call_id, agent_id, invited_by, created_at) VALUES (?, ?, ?, ?)")
            .bind(call)
            .bind(agent)
            .bind(by)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn is_invited(&self, call: &str, agent: i64) -> Result<bool, sqlx::Error> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM invites WHERE call_id = ? AND agent_id = ?")
            .bind(call)
            .bind(agent)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_accept_wins_and_records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let a = store.add_agent("a@example.com", None, "h").await.unwrap();
        let b = store.add_agent("b@example.com", Some("Bea"), "h").await.unwrap();
        store.create_call("c1", "Carla", "billing", "call-c1").await.unwrap();
        store.create_call("c2", "Dan", "", "call-c2").await.unwrap();
        let (ra, rb) = tokio::join!(store.accept("c1", a), store.accept("c1", b));
        assert!(ra.unwrap() ^ rb.unwrap(), "exactly one accept wins");
        drop(store);

        let store = Store::open(dir.path()).await.unwrap();
        let queue = store.queue().await.unwrap();
        assert_eq!(queue.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["c2"]);
        assert_eq!(store.queue_position(&queue[0]).await.unwrap(), 1);
        assert_eq!(store.finish("c1").await.unwrap(), Some(CallStatus::Ended));
        assert_eq!(store.finish("c1").await.unwrap(), None, "a finished call stays finished");
        assert_eq!(store.finish("c2").await.unwrap(), Some(CallStatus::Cancelled));
        let history = store.history(10).await.unwrap();
        assert_eq!(history.len(), 2);
        assert!(history.iter().any(|c| c.id == "c1" && c.agent.is_some() && c.accepted_at.is_some()));
    }

    #[tokio::test]
    async fn history_searches_customer_topic_and_agent_and_pages_without_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let bea = store.add_agent("bea@example.com", Some("Bea Jones"), "h").await.unwrap();
        for i in 0..7 {
            let (name, topic) = if i % 2 == 0 { ("Carla", "billing") } else { ("Dan", "50%_off") };
            let id = format!("c{i}");
            store.create_call(&id, name, topic, &format!("call-{id}")).await.unwrap();
            if i < 3 {
                store.accept(&id, bea).await.unwrap();
            }
            store.finish(&id).await.unwrap();
        }
        let search = |text: &str| HistoryQuery { text: text.into(), limit: 100, ..Default::default() };
        let ids = |calls: Vec<Call>| calls.into_iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(ids(store.search_history(&search("carla")).await.unwrap()).len(), 4, "by customer, any case");
        assert_eq!(ids(store.search_history(&search("Jones")).await.unwrap()).len(), 3, "by agent name");
        assert_eq!(ids(store.search_history(&search("bea@")).await.unwrap()).len(), 3, "by agent e-mail");
        // % and _ are text, not wildcards.
        assert_eq!(ids(store.search_history(&search("50%_")).await.unwrap()).len(), 3);
        assert_eq!(ids(store.search_history(&search("5%f")).await.unwrap()).len(), 0);
        let future = HistoryQuery { from: Some(now_ms() + 60_000), limit: 100, ..Default::default() };
        assert!(store.search_history(&future).await.unwrap().is_empty(), "a date range");

        // Pages of 3 (all seven were created within the same millisecond or
        // so: the id breaks ties) cover everything once.
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let q = HistoryQuery { before: before.clone(), limit: 3, ..Default::default() };
            let page = store.search_history(&q).await.unwrap();
            let Some(last) = page.last() else { break };
            before = Some((last.created_at, last.id.clone()));
            seen.extend(ids(page));
        }
        seen.sort();
        assert_eq!(seen, (0..7).map(|i| format!("c{i}")).collect::<Vec<_>>());
    }
}
