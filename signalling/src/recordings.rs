//! Recordings: starting and stopping them (an agent in the call, every
//! accepted call with `--record-calls`), what the recorder reports (files
//! started, progressing, finished or failed) kept in the database, listing
//! them for the console, serving their files to signed-in agents, and
//! deleting them after the retention period.
//!
//! The media plane writes the files (`sfu::record`); this module only
//! keeps their metadata. A file's row is updated every couple of seconds
//! while it is written, so after a crash the row says how far it got; at
//! start-up rows still "recording" become "interrupted".

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde::Serialize;
use sfu::{ErrorCode, RecordingEvent, Sfu};
use sqlx::FromRow;
use tokio::sync::mpsc;

use crate::agents::ApiError;
use crate::store::{now_ms, Store};

pub struct Recordings {
    store: Store,
    sfu: Sfu,
    /// Where the media plane writes; `None`: recording is off.
    dir: Option<PathBuf>,
    /// Record every accepted call.
    pub record_calls: bool,
}

/// A file as the console lists it.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct FileView {
    pub id: String,
    pub identity: String,
    pub screen: bool,
    pub offset_ms: i64,
    pub duration_ms: i64,
    pub bytes: i64,
    pub gaps: i64,
    pub status: String,
    pub error: Option<String>,
}

/// A recording and its files.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingView {
    pub id: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub status: String,
    pub error: Option<String>,
    pub files: Vec<FileView>,
}

#[derive(FromRow)]
struct RecordingRow {
    id: String,
    call_id: Option<String>,
    started_at: i64,
    ended_at: Option<i64>,
    status: String,
    error: Option<String>,
}

fn unavailable(msg: &str) -> ApiError {
    ApiError(StatusCode::CONFLICT, ErrorCode::RecordingUnavailable, msg.into())
}

impl Recordings {
    pub fn new(store: Store, sfu: Sfu, dir: Option<PathBuf>, record_calls: bool) -> Self {
        Recordings { store, sfu, dir, record_calls }
    }

    pub fn enabled(&self) -> bool {
        self.dir.is_some()
    }

    /// Starts recording `room` (for `call`, by agent `by`); the recording's
    /// id. Already recording: that recording's id.
    pub async fn start(&self, room: &str, call: Option<&str>, by: Option<i64>) -> Result<String, ApiError> {
        if !self.enabled() {
            return Err(unavailable("recording is off on this server"));
        }
        if let Some(id) = self.sfu.recording(room) {
            return Ok(id.to_string());
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        sqlx::query(
            "INSERT INTO recordings (id, room, call_id, started_by, started_at, status) VALUES (?, ?, ?, ?, ?, 'recording')",
        )
        .bind(&id)
        .bind(room)
        .bind(call)
        .bind(by)
        .bind(now_ms())
        .execute(self.store.pool())
        .await?;
        self.sfu.record(room, Arc::from(id.as_str()));
        tracing::info!(recording = %id, room, call, "recording started");
        Ok(id)
    }

    /// Stops recording `room` (its files finish in the background).
    pub async fn stop(&self, room: &str) -> Result<(), ApiError> {
        self.sfu.stop_recording(room, None);
        // Also a recording whose room emptied (the media plane forgot it).
        let r = sqlx::query(
            "UPDATE recordings SET status = 'finished', ended_at = ? WHERE room = ? AND status = 'recording'",
        )
        .bind(now_ms())
        .bind(room)
        .execute(self.store.pool())
        .await?;
        if r.rows_affected() > 0 {
            tracing::info!(room, "recording stopped");
        }
        Ok(())
    }

    /// The id of the recording in progress in `room`.
    pub fn current(&self, room: &str) -> Option<String> {
        self.sfu.recording(room).map(|r| r.to_string())
    }

    pub fn is_recording(&self, room: &str) -> bool {
        self.sfu.recording(room).is_some()
    }

    async fn end(&self, id: &str, status: &str, error: Option<&str>) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE recordings SET status = ?, error = ?, ended_at = ? WHERE id = ? AND status = 'recording'")
            .bind(status)
            .bind(error)
            .bind(now_ms())
            .bind(id)
            .execute(self.store.pool())
            .await
            .map(|_| ())
    }

    /// A clean stop: recordings in progress ended with the server.
    pub async fn finish_all(&self) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE recordings SET status = 'finished', ended_at = ? WHERE status = 'recording'")
            .bind(now_ms())
            .execute(self.store.pool())
            .await
            .map(|_| ())
    }

    /// Rows a crash left "recording" are interrupted: their files play up
    /// to their last progress.
    pub async fn mark_interrupted(&self) -> Result<u64, sqlx::Error> {
        let pool = self.store.pool();
        sqlx::query("UPDATE recording_files SET status = 'interrupted' WHERE status = 'recording'")
            .execute(pool)
            .await?;
        let r = sqlx::query(
            "UPDATE recordings SET status = 'interrupted', ended_at = COALESCE(ended_at, ?) WHERE status = 'recording'",
        )
        .bind(now_ms())
        .execute(pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Keeps what the recorder reports.
    pub async fn apply(&self, ev: RecordingEvent) -> Result<(), sqlx::Error> {
        let pool = self.store.pool();
        match ev {
            RecordingEvent::FileStarted { recording, identity, file, screen, offset_ms, .. } => {
                sqlx::query(
                    "INSERT OR IGNORE INTO recording_files (id, recording_id, path, identity, screen, offset_ms, status, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?, 'recording', ?)",
                )
                .bind(uuid::Uuid::new_v4().simple().to_string())
                .bind(&*recording)
                .bind(&file)
                .bind(&*identity)
                .bind(screen)
                .bind(offset_ms as i64)
                .bind(now_ms())
                .execute(pool)
                .await?;
            }
            RecordingEvent::FileProgress { file, duration_ms, bytes, .. } => {
                sqlx::query("UPDATE recording_files SET duration_ms = ?, bytes = ?, updated_at = ? WHERE path = ?")
                    .bind(duration_ms as i64)
                    .bind(bytes as i64)
                    .bind(now_ms())
                    .bind(&file)
                    .execute(pool)
                    .await?;
            }
            RecordingEvent::FileFinished { recording, file, duration_ms, bytes, gaps, error } => {
                let status = if error.is_some() { "failed" } else { "finished" };
                sqlx::query(
                    "UPDATE recording_files SET duration_ms = ?, bytes = ?, gaps = ?, status = ?, error = ?, updated_at = ? WHERE path = ?",
                )
                .bind(duration_ms as i64)
                .bind(bytes as i64)
                .bind(gaps as i64)
                .bind(status)
                .bind(&error)
                .bind(now_ms())
                .bind(&file)
                .execute(pool)
                .await?;
                let room: Option<(String,)> = sqlx::query_as("SELECT room FROM recordings WHERE id = ?")
                    .bind(&*recording)
                    .fetch_optional(pool)
                    .await?;
                let Some((room,)) = room else { return Ok(()) };
                let current = self.sfu.recording(&room).as_deref() == Some(&*recording);
                if let Some(error) = error {
                    // A file that cannot be written stops the whole recording,
                    // and the room is told why; the call goes on.
                    if current {
                        self.sfu.stop_recording(&room, Some(format!("recording stopped: {error}")));
                    }
                    self.end(&recording, "failed", Some(&error)).await?;
                } else if !current {
                    // The room emptied (the media plane forgets a recording
                    // with its room): the recording ends with its last file.
                    let open: (i64,) = sqlx::query_as(
                        "SELECT COUNT(*) FROM recording_files WHERE recording_id = ? AND status = 'recording'",
                    )
                    .bind(&*recording)
                    .fetch_one(pool)
                    .await?;
                    if open.0 == 0 {
                        self.end(&recording, "finished", None).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The recordings of each of `calls`, newest first.
    pub async fn of_calls(&self, calls: &[String]) -> Result<HashMap<String, Vec<RecordingView>>, sqlx::Error> {
        let mut out: HashMap<String, Vec<RecordingView>> = HashMap::new();
        if calls.is_empty() {
            return Ok(out);
        }
        let marks = vec!["?"; calls.len()].join(",");
        let sql = format!(
            "SELECT id, call_id, started_at, ended_at, status, error FROM recordings WHERE call_id IN ({marks}) ORDER BY started_at DESC"
        );
        let mut q = sqlx::query_as::<_, RecordingRow>(&sql);
        for c in calls {
            q = q.bind(c);
        }
        for (call, view) in self.with_files(q.fetch_all(self.store.pool()).await?).await? {
            out.entry(call.unwrap_or_default()).or_default().push(view);
        }
        Ok(out)
    }

    /// The recordings of `room` (calls' and others), newest first.
    pub async fn of_room(&self, room: &str) -> Result<Vec<RecordingView>, sqlx::Error> {
        let rows = sqlx::query_as::<_, RecordingRow>(
            "SELECT id, call_id, started_at, ended_at, status, error FROM recordings WHERE room = ? ORDER BY started_at DESC",
        )
        .bind(room)
        .fetch_all(self.store.pool())
        .await?;
        Ok(self.with_files(rows).await?.into_iter().map(|(_, v)| v).collect())
    }

    async fn with_files(&self, rows: Vec<RecordingRow>) -> Result<Vec<(Option<String>, RecordingView)>, sqlx::Error> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let files = sqlx::query_as::<_, FileView>(
                "SELECT id, identity, screen, offset_ms, duration_ms, bytes, gaps, status, error FROM recording_files \
                 WHERE recording_id = ? ORDER BY offset_ms, identity",
            )
            .bind(&r.id)
            .fetch_all(self.store.pool())
            .await?;
            let view = RecordingView {
                id: r.id,
                started_at: r.started_at,
                ended_at: r.ended_at,
                status: r.status,
                error: r.error,
                files,
            };
            out.push((r.call_id, view));
        }
        Ok(out)
    }

    /// File `id`: its path, if it exists, and its recording's room.
    pub async fn file(&self, id: &str) -> Result<(PathBuf, String), ApiError> {
        let missing = || ApiError(StatusCode::NOT_FOUND, ErrorCode::NoSuchRecording, "no such recording".into());
        let dir = self.dir.as_ref().ok_or_else(missing)?;
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT f.path, r.room FROM recording_files f JOIN recordings r ON r.id = f.recording_id WHERE f.id = ?",
        )
        .bind(id)
        .fetch_optional(self.store.pool())
        .await?;
        let (path, room) = row.ok_or_else(missing)?;
        let path = dir.join(path);
        if !path.is_file() {
            return Err(missing());
        }
        Ok((path, room))
    }

    /// Deletes recordings (files and rows) that started before `retention`.
    pub async fn expire(&self, retention: Duration) -> Result<u64, sqlx::Error> {
        let Some(dir) = &self.dir else { return Ok(0) };
        let before = now_ms() - retention.as_millis() as i64;
        let old: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM recordings WHERE started_at < ? AND status != 'recording'")
                .bind(before)
                .fetch_all(self.store.pool())
                .await?;
        for (id,) in &old {
            // The id names the recording's folder; it is ours (a uuid), never a path from outside.
            let folder = dir.join(id);
            if let Err(e) = std::fs::remove_dir_all(&folder) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(recording = %id, "deleting {}: {e}", folder.display());
                    continue;
                }
            }
            sqlx::query("DELETE FROM recording_files WHERE recording_id = ?")
                .bind(id)
                .execute(self.store.pool())
                .await?;
            sqlx::query("DELETE FROM recordings WHERE id = ?").bind(id).execute(self.store.pool()).await?;
            tracing::info!(recording = %id, "recording deleted (retention)");
        }
        Ok(old.len() as u64)
    }
}

/// Applies the recorder's events in order, off the media plane's threads.
pub async fn follow(recordings: Arc<Recordings>, mut events: mpsc::UnboundedReceiver<RecordingEvent>) {
    while let Some(ev) = events.recv().await {
        if let Err(e) = recordings.apply(ev).await {
            tracing::error!("keeping a recording's progress: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nobody;
    impl sfu::EventSink for Nobody {
        fn deliver(&self, _: sfu::ParticipantId, _: sfu::ClientEvent) {}
    }

    async fn recording(store: &Store, dir: &std::path::Path, id: &str, age: Duration, status: &str) {
        let started = now_ms() - age.as_millis() as i64;
        sqlx::query("INSERT INTO recordings (id, room, started_at, status) VALUES (?, 'r', ?, ?)")
            .bind(id)
            .bind(started)
            .bind(status)
            .execute(store.pool())
            .await
            .unwrap();
        let path = format!("{id}/1-camera.webm");
        sqlx::query(
            "INSERT INTO recording_files (id, recording_id, path, identity, screen, offset_ms, status, updated_at) \
             VALUES (?, ?, ?, 'a', 0, 0, ?, ?)",
        )
        .bind(format!("f{id}"))
        .bind(id)
        .bind(&path)
        .bind(status)
        .bind(started)
        .execute(store.pool())
        .await
        .unwrap();
        std::fs::create_dir_all(dir.join(id)).unwrap();
        std::fs::write(dir.join(path), b"webm").unwrap();
    }

    #[tokio::test]
    async fn recordings_past_the_retention_lose_their_files_and_rows_others_stay() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("recordings");
        let store = Store::open(data.path()).await.unwrap();
        let config = sfu::SfuConfig { shards: 1, udp_port: 0, recordings_dir: Some(dir.clone()), ..Default::default() };
        let sfu = Sfu::start(config, Arc::new(Nobody)).unwrap();
        let recordings = Recordings::new(store.clone(), sfu.clone(), Some(dir.clone()), false);
        let day = Duration::from_secs(86_400);
        recording(&store, &dir, "old", 40 * day, "finished").await;
        recording(&store, &dir, "oldfailed", 31 * day, "failed").await;
        recording(&store, &dir, "recent", 29 * day, "finished").await;
        // Still being written (a month-long room): never deleted under it.
        recording(&store, &dir, "live", 40 * day, "recording").await;

        assert_eq!(recordings.expire(30 * day).await.unwrap(), 2);
        let left: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM recordings ORDER BY id").fetch_all(store.pool()).await.unwrap();
        assert_eq!(left, [("live".to_string(),), ("recent".to_string(),)]);
        let files: (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM recording_files").fetch_one(store.pool()).await.unwrap();
        assert_eq!(files.0, 2);
        for (id, kept) in [("old", false), ("oldfailed", false), ("recent", true), ("live", true)] {
            assert_eq!(dir.join(id).join("1-camera.webm").exists(), kept, "{id}");
        }
        assert!(recordings.file("frecent").await.is_ok());
        assert!(recordings.file("fold").await.is_err());
        sfu.shutdown();
    }
}
