//! The call flow's rules, apart from HTTP: a customer's request is queued,
//! one agent takes it, others may be invited, and a hang-up ends it for
//! everyone. Every change is stored first, then announced on `events`
//! (agent consoles, waiting customers and room sessions listen).

use sfu::ErrorCode;
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::broadcast;

use crate::agents::ApiError;
use crate::auth::Keys;
use crate::store::{now_ms, Call, CallStatus, Store};

/// Room tokens from the call flow expire after this even if the call goes on
/// (clients rejoining later need a fresh one).
pub const CALL_TOKEN_TTL: Duration = Duration::from_secs(4 * 3600);
pub const MAX_NAME: usize = 80;
pub const MAX_TOPIC: usize = 200;

#[derive(Debug, Clone)]
pub enum CallEvent {
    /// The queue changed (a call was added, taken, cancelled or missed).
    QueueChanged,
    /// This call's status changed.
    CallChanged { call: String },
    /// An agent was invited into a call.
    Invited { agent: i64, call: String, room: String, customer: String, by: String },
    /// The call in this room ended; everyone in it is disconnected.
    RoomClosed { room: String },
    /// An agent opened or closed a console, or said they are away or back.
    TeamChanged,
    /// This agent session was signed out: its consoles close.
    SignedOut { sid: String },
}

pub struct Calls {
    pub store: Store,
    keys: Keys,
    events: broadcast::Sender<CallEvent>,
    /// Queued longer than this, a call is marked missed.
    pub queue_timeout: Duration,
}

/// What a signed-in participant gets to enter a call's room.
pub struct RoomPass {
    pub call: Call,
    pub token: String,
}

impl Calls {
    pub fn new(store: Store, keys: Keys, queue_timeout: Duration) -> Calls {
        let (events, _) = broadcast::channel(1024);
        Calls { store, keys, events, queue_timeout }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<CallEvent> {
        self.events.subscribe()
    }

    pub fn announce(&self, e: CallEvent) {
        let _ = self.events.send(e); // nobody listening is fine
    }

    /// Stores a customer's request; returns it with the customer's token.
    pub async fn create(&self, name: &str, topic: &str) -> Result<RoomPass, ApiError> {
        let name = name.trim();
        let topic = topic.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME {
            return Err(bad_request(ErrorCode::BadName, format!("a name of 1 to {MAX_NAME} characters is required")));
        }
        if topic.chars().count() > MAX_TOPIC {
            return Err(bad_request(ErrorCode::BadTopic, format!("the topic is limited to {MAX_TOPIC} characters")));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let room = format!("call-{}", &id[..12]);
        let call = self.store.create_call(&id, name, topic, &room).await?;
        let token = self.mint(&call, name, None).await?;
        tracing::info!(call = %id, %room, "call requested");
        self.announce(CallEvent::QueueChanged);
        Ok(RoomPass { call, token })
    }

    /// The call `token` was minted for, if it is that call's token.
    pub async fn call_for_token(&self, id: &str, token: &str) -> Result<Call, ApiError> {
        let claims =
            self.keys.verify(token).map_err(|e| ApiError(StatusCode::UNAUTHORIZED, e.code(), e.to_string()))?;
        if claims.call.as_deref() != Some(id) {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                ErrorCode::NotAllowed,
                "this token is for another call".into(),
            ));
        }
        self.get(id).await
    }

    pub async fn get(&self, id: &str) -> Result<Call, ApiError> {
        self.store
            .call(id)
            .await?
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, ErrorCode::NoSuchCall, format!("no call {id}")))
    }

    /// Gives the call to `agent` if nobody took it first.
    pub async fn accept(&self, id: &str, agent: i64, email: &str) -> Result<RoomPass, ApiError> {
        if !self.store.accept(id, agent).await? {
            let call = self.get(id).await?;
            let (code, msg) = match call.status {
                CallStatus::Accepted => (
                    ErrorCode::AlreadyTaken,
                    format!("{} was taken by {}", call.customer_name, call.agent.unwrap_or_default()),
                ),
                s => (ErrorCode::NotQueued, format!("the call is {}", s.as_str())),
            };
            return Err(ApiError(StatusCode::CONFLICT, code, msg));
        }
        tracing::info!(call = %id, agent = %email, "call accepted");
        self.announce(CallEvent::QueueChanged);
        self.announce(CallEvent::CallChanged { call: id.into() });
        let call = self.get(id).await?;
        let token = self.mint(&call, email, Some(agent)).await?;
        Ok(RoomPass { call, token })
    }

    /// Ends a live call (or cancels a queued one) for everyone in it.
    pub async fn finish(&self, id: &str) -> Result<Call, ApiError> {
        let status = self.store.finish(id).await?;
        let call = self.get(id).await?;
        if let Some(status) = status {
            tracing::info!(call = %id, status = status.as_str(), "call closed");
            self.announce(CallEvent::QueueChanged);
            self.announce(CallEvent::CallChanged { call: id.into() });
            self.announce(CallEvent::RoomClosed { room: call.room.clone() });
        }
        Ok(call)
    }

    /// An agent in an accepted call invites another agent by email.
    pub async fn invite(&self, id: &str, by: i64, by_email: &str, email: &str) -> Result<(), ApiError> {
        let call = self.live_call_of(id, by).await?;
        let Some(agent) = self.store.agent_by_email(email.trim()).await? else {
            return Err(ApiError(StatusCode::NOT_FOUND, ErrorCode::NoSuchAgent, format!("no agent {email}")));
        };
        if agent.id == by {
            return Err(bad_request(ErrorCode::SelfInvite, "you are in this call already".into()));
        }
        self.store.invite(id, agent.id, by).await?;
        self.announce(CallEvent::Invited {
            agent: agent.id,
            call: id.into(),
            room: call.room,
            customer: call.customer_name,
            by: by_email.into(),
        });
        Ok(())
    }

    /// An invited agent's way into the room.
    pub async fn join_invited(&self, id: &str, agent: i64, email: &str) -> Result<RoomPass, ApiError> {
        let call = self.get(id).await?;
        if !self.store.is_invited(id, agent).await? {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                ErrorCode::NotInvited,
                "you were not invited into this call".into(),
            ));
        }
        if call.status != CallStatus::Accepted {
            return Err(ApiError(
                StatusCode::CONFLICT,
                ErrorCode::NotLive,
                format!("the call is {}", call.status.as_str()),
            ));
        }
        let token = self.mint(&call, email, Some(agent)).await?;
        Ok(RoomPass { call, token })
    }

    /// The call if `agent` took it or was invited into it and it is accepted.
    pub async fn live_call_of(&self, id: &str, agent: i64) -> Result<Call, ApiError> {
        let call = self.get(id).await?;
        let member = call.agent_id == Some(agent) || self.store.is_invited(id, agent).await?;
        if !member {
            return Err(ApiError(StatusCode::FORBIDDEN, ErrorCode::NotInCall, "you are not in this call".into()));
        }
        if call.status != CallStatus::Accepted {
            return Err(ApiError(
                StatusCode::CONFLICT,
                ErrorCode::NotLive,
                format!("the call is {}", call.status.as_str()),
            ));
        }
        Ok(call)
    }

    /// Whether a token minted for `call` may still join its room.
    pub async fn admits(&self, call: &str) -> Result<(), (ErrorCode, String)> {
        match self.store.call(call).await {
            Ok(Some(c)) if c.status.is_live() => Ok(()),
            Ok(Some(c)) => Err((ErrorCode::CallEnded, format!("the call is {}", c.status.as_str()))),
            Ok(None) => Err((ErrorCode::NoSuchCall, "the call does not exist".into())),
            Err(e) => {
                tracing::error!("database: {e}");
                Err((ErrorCode::StorageError, "the call could not be checked".into()))
            }
        }
    }

    /// Marks calls queued for longer than the timeout as missed; run periodically.
    pub async fn sweep_missed(&self) {
        let cutoff = now_ms() - self.queue_timeout.as_millis() as i64;
        match self.store.mark_missed(cutoff).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!("{n} queued call(s) missed");
                self.announce(CallEvent::QueueChanged);
            }
            Err(e) => tracing::error!("marking missed calls: {e}"),
        }
    }

    /// A token for `call`'s room; an agent's carries their display name.
    async fn mint(&self, call: &Call, identity: &str, agent: Option<i64>) -> Result<String, ApiError> {
        let name = match agent {
            Some(id) => self.store.agent(id).await?.and_then(|a| a.name),
            None => None,
        };
        self.keys.mint_for_call(&call.id, &call.room, identity, name.as_deref(), CALL_TOKEN_TTL).map_err(|e| {
            tracing::error!("minting a call token: {e}");
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::TokenError, "no token could be made".into())
        })
    }
}

fn bad_request(code: ErrorCode, message: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, code, message)
}
