//! Access tokens: HS256 JWTs signed with an API key's secret, carrying grants
//! in the shape LiveKit users know (`iss` = API key, `sub` = identity,
//! `video.room`, `video.roomJoin`, `video.canPublish`, `video.canSubscribe`;
//! for the server API `video.roomRecord` and `video.roomAdmin`, for one
//! room or, with no `video.room`, every room).

use sfu::ErrorCode;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::distributions::{Alphanumeric, DistString};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoGrant {
    #[serde(default)]
    pub room: String,
    #[serde(default)]
    pub room_join: bool,
    /// Server API: start and stop recordings, fetch their files.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub room_record: bool,
    /// Server API: everything about rooms (recording included).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub room_admin: bool,
    #[serde(default = "yes")]
    pub can_publish: bool,
    #[serde(default = "yes")]
    pub can_subscribe: bool,
}

fn yes() -> bool {
    true
}

impl VideoGrant {
    /// May record `room` and fetch its recordings.
    pub fn may_record(&self, room: &str) -> bool {
        (self.room_record || self.room_admin) && (self.room.is_empty() || self.room == room)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The API key whose secret signed the token.
    pub iss: String,
    /// The participant's identity.
    pub sub: String,
    /// What to call them (LiveKit's `name`), when not the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    pub video: VideoGrant,
    /// Set on tokens the call flow mints: the token is good only while that
    /// call request is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<String>,
}

/// An agent's signed-in session (the console cookie). Its audience keeps it
/// from being usable as a room token and the other way round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentSession {
    pub iss: String,
    /// The agent's id.
    pub sub: i64,
    pub email: String,
    /// The server-side session (store's `agent_sessions`) this token stands for.
    pub sid: String,
    pub exp: u64,
    pub aud: String,
}

const SESSION_AUDIENCE: &str = "switchboard-agent-session";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no access token given")]
    Missing,
    #[error("access token is malformed or its signature does not verify")]
    Invalid,
    #[error("access token has expired")]
    Expired,
    #[error("access token was signed with an unknown API key")]
    UnknownKey,
    #[error("access token does not grant joining a room")]
    NoJoinGrant,
    #[error("access token grants no server API access")]
    NoServerGrant,
}

impl AuthError {
    /// Stable code for the client.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Missing => ErrorCode::MissingToken,
            AuthError::Invalid => ErrorCode::BadToken,
            AuthError::Expired => ErrorCode::TokenExpired,
            AuthError::UnknownKey => ErrorCode::BadToken,
            AuthError::NoJoinGrant | AuthError::NoServerGrant => ErrorCode::NotAllowed,
        }
    }
}

/// Why keys could not be loaded or a token signed.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Format { path: PathBuf, source: serde_json::Error },
    #[error("{0} has no keys")]
    Empty(PathBuf),
    #[error("no API key configured")]
    NoKey,
    #[error("signing: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// API keys and their secrets.
#[derive(Clone, Default)]
pub struct Keys {
    secrets: HashMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct KeysFile {
    keys: HashMap<String, String>,
}

pub const KEYS_FILE: &str = "keys.json";

impl Keys {
    pub fn single(key: impl Into<String>, secret: impl Into<String>) -> Self {
        Keys { secrets: HashMap::from([(key.into(), secret.into())]) }
    }

    /// Loads `data_dir/keys.json`, creating it with a fresh dev key on first
    /// run. Returns the keys, the file's path and whether it was created.
    pub fn load_or_create(data_dir: &Path) -> Result<(Keys, PathBuf, bool), KeysError> {
        let path = data_dir.join(KEYS_FILE);
        let io = |source| KeysError::Io { path: path.clone(), source };
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(io)?;
            let file: KeysFile =
                serde_json::from_str(&text).map_err(|source| KeysError::Format { path: path.clone(), source })?;
            if file.keys.is_empty() {
                return Err(KeysError::Empty(path));
            }
            return Ok((Keys { secrets: file.keys }, path, false));
        }
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let mut rng = rand::thread_rng();
        let key = format!("dev{}", Alphanumeric.sample_string(&mut rng, 12));
        let secret = Alphanumeric.sample_string(&mut rng, 40);
        let file = KeysFile { keys: HashMap::from([(key, secret)]) };
        // Invariant: a map of strings always serializes.
        write_private(&path, &serde_json::to_string_pretty(&file).expect("serializable keys")).map_err(io)?;
        Ok((Keys { secrets: file.keys }, path, true))
    }

    /// The key used to sign tokens this server mints itself (CLI, pages).
    pub fn default_key(&self) -> Option<&str> {
        self.secrets.keys().min().map(|s| s.as_str())
    }

    pub fn mint(
        &self,
        room: &str,
        identity: &str,
        ttl: Duration,
        can_publish: bool,
        can_subscribe: bool,
    ) -> Result<String, KeysError> {
        self.sign(&self.claims(room, identity, ttl, can_publish, can_subscribe)?)
    }

    /// A token for a call's room, valid only while that call is live.
    pub fn mint_for_call(
        &self,
        call: &str,
        room: &str,
        identity: &str,
        name: Option<&str>,
        ttl: Duration,
    ) -> Result<String, KeysError> {
        let mut claims = self.claims(room, identity, ttl, true, true)?;
        claims.call = Some(call.to_string());
        claims.name = name.map(str::to_string);
        self.sign(&claims)
    }

    fn claims(
        &self,
        room: &str,
        identity: &str,
        ttl: Duration,
        can_publish: bool,
        can_subscribe: bool,
    ) -> Result<Claims, KeysError> {
        let key = self.default_key().ok_or(KeysError::NoKey)?;
        Ok(Claims {
            iss: key.to_string(),
            sub: identity.to_string(),
            name: None,
            exp: unix_now() + ttl.as_secs(),
            nbf: None,
            video: VideoGrant {
                room: room.to_string(),
                room_join: true,
                can_publish,
                can_subscribe,
                room_record: false,
                room_admin: false,
            },
            call: None,
        })
    }

    /// A server API token granting recording of `room` (every room if `None`).
    pub fn mint_recorder(&self, room: Option<&str>, identity: &str, ttl: Duration) -> Result<String, KeysError> {
        let mut claims = self.claims(room.unwrap_or(""), identity, ttl, false, false)?;
        claims.video.room_join = false;
        claims.video.room_record = true;
        self.sign(&claims)
    }

    pub fn sign_session(&self, agent: i64, email: &str, sid: &str, ttl: Duration) -> Result<String, KeysError> {
        let key = self.default_key().ok_or(KeysError::NoKey)?;
        let claims = AgentSession {
            iss: key.to_string(),
            sub: agent,
            email: email.to_string(),
            sid: sid.to_string(),
            exp: unix_now() + ttl.as_secs(),
            aud: SESSION_AUDIENCE.to_string(),
        };
        let secret = &self.secrets[key];
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))?)
    }

    pub fn verify_session(&self, token: &str) -> Result<AgentSession, AuthError> {
        let v = |v: &mut Validation| v.set_audience(&[SESSION_AUDIENCE]);
        self.decode::<AgentSession>(token, |c| &c.iss, v)
    }

    /// Verifies an HS256 token: `iss` (read unverified) picks the secret,
    /// then signature, expiry and whatever `tune` adds are checked.
    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        iss: impl Fn(&T) -> &String,
        tune: impl Fn(&mut Validation),
    ) -> Result<T, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let mut peek = Validation::new(Algorithm::HS256);
        peek.insecure_disable_signature_validation();
        peek.validate_exp = false;
        peek.validate_aud = false;
        let unverified =
            jsonwebtoken::decode::<T>(token, &DecodingKey::from_secret(&[]), &peek).map_err(|_| AuthError::Invalid)?;
        let secret = self.secrets.get(iss(&unverified.claims)).ok_or(AuthError::UnknownKey)?;
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 5;
        v.validate_nbf = true;
        tune(&mut v);
        let data =
            jsonwebtoken::decode::<T>(token, &DecodingKey::from_secret(secret.as_bytes()), &v).map_err(|e| match e
                .kind()
            {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            })?;
        Ok(data.claims)
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, KeysError> {
        let secret = self.secrets.get(&claims.iss).ok_or(KeysError::NoKey)?;
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))?)
    }

    /// A server API token: signed, current, and granting something beyond
    /// joining (what exactly is the endpoint's to check).
    pub fn verify_server(&self, token: &str) -> Result<Claims, AuthError> {
        let claims = self.decode::<Claims>(token, |c| &c.iss, |_| {})?;
        if !(claims.video.room_record || claims.video.room_admin) {
            return Err(AuthError::NoServerGrant);
        }
        Ok(claims)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let claims = self.decode::<Claims>(token, |c| &c.iss, |_| {})?;
        if !claims.video.room_join || claims.video.room.is_empty() || claims.sub.is_empty() {
            return Err(AuthError::NoJoinGrant);
        }
        Ok(claims)
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_failures() {
        let keys = Keys::single("k1", "s3cret-s3cret-s3cret-s3cret");
        let t = keys.mint("r1", "alice", Duration::from_secs(60), true, true).unwrap();
        let c = keys.verify(&t).unwrap();
        assert_eq!((c.sub.as_str(), c.video.room.as_str()), ("alice", "r1"));

        let other = Keys::single("k1", "another-secret-another-secret");
        assert_eq!(other.verify(&t).unwrap_err(), AuthError::Invalid);
        assert_eq!(Keys::single("k2", "x").verify(&t).unwrap_err(), AuthError::UnknownKey);
        assert_eq!(keys.verify("").unwrap_err(), AuthError::Missing);
        assert_eq!(keys.verify("not.a.jwt").unwrap_err(), AuthError::Invalid);

        let mut expired = c.clone();
        expired.exp = unix_now() - 120;
        assert_eq!(keys.verify(&keys.sign(&expired).unwrap()).unwrap_err(), AuthError::Expired);

        // Sessions and room tokens are not interchangeable.
        let session = keys.sign_session(7, "a@example.com", "s1", Duration::from_secs(60)).unwrap();
        assert_eq!(keys.verify_session(&session).unwrap().sub, 7);
        assert!(keys.verify(&session).is_err());
        assert!(keys.verify_session(&t).is_err());
    }
}
