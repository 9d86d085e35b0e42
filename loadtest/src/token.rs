//! Access tokens for synthetic peers, minted like `switchboard token` does:
//! HS256 with an API key's secret, from the server's `keys.json` or given.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;

pub struct ApiKey {
    pub key: String,
    pub secret: String,
}

impl ApiKey {
    /// The first key (by name) of a server data dir's `keys.json`.
    pub fn from_keys_file(path: &Path) -> anyhow::Result<ApiKey> {
        #[derive(serde::Deserialize)]
        struct KeysFile {
            keys: std::collections::BTreeMap<String, String>,
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading API keys from {}", path.display()))?;
        let file: KeysFile = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let (key, secret) = file.keys.into_iter().next().with_context(|| format!("{} has no keys", path.display()))?;
        Ok(ApiKey { key, secret })
    }

    /// A room token; `can_publish` false makes a viewer (a webinar's audience).
    pub fn mint(&self, room: &str, identity: &str, can_publish: bool, ttl: Duration) -> anyhow::Result<String> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Grant<'a> {
            room: &'a str,
            room_join: bool,
            can_publish: bool,
            can_subscribe: bool,
        }
        #[derive(Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            sub: &'a str,
            exp: u64,
            video: Grant<'a>,
        }
        let exp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + ttl.as_secs();
        let claims = Claims {
            iss: &self.key,
            sub: identity,
            exp,
            video: Grant { room, room_join: true, can_publish, can_subscribe: true },
        };
        let key = jsonwebtoken::EncodingKey::from_secret(self.secret.as_bytes());
        Ok(jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key)?)
    }
}
