//! The ICE servers each client is handed in `joined`: STUN servers, and TURN
//! servers with either the deployment's static credentials or short-lived
//! ones minted for that participant with a secret shared with the TURN
//! server (the "TURN REST API" scheme coturn implements with
//! `--use-auth-secret --static-auth-secret`): username
//! `<expiry unix time>:<identity>`, password base64(HMAC-SHA1(secret,
//! username)). The TURN server checks both without asking us, and refuses
//! the credential once the expiry has passed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::protocol::IceServer;

/// Default lifetime of a minted TURN credential. A TURN allocation cannot be
/// refreshed once its credential has expired, so this bounds how long a
/// relayed call can last: longer than any support call.
pub const DEFAULT_TURN_TTL: Duration = Duration::from_secs(12 * 3600);

/// How TURN servers authenticate our clients.
#[derive(Debug, Clone)]
pub enum TurnAuth {
    None,
    Static {
        username: String,
        credential: String,
    },
    /// Minted per participant; valid for `ttl`.
    Secret {
        secret: String,
        ttl: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct IceServers {
    urls: Vec<String>,
    turn: TurnAuth,
}

impl IceServers {
    /// Checks the URLs (`stun:`, `turn:`, `turns:`); TURN URLs need some
    /// credential, or browsers refuse the whole configuration.
    pub fn new(urls: Vec<String>, turn: TurnAuth) -> Result<Self, String> {
        for u in &urls {
            if !["stun:", "stuns:", "turn:", "turns:"].iter().any(|s| u.starts_with(s)) {
                return Err(format!("--ice-server {u:?}: expected a stun:, turn: or turns: URL"));
            }
            if is_turn(u) && matches!(turn, TurnAuth::None) {
                return Err(format!(
                    "--ice-server {u:?} is a TURN server: give --turn-secret (shared with it) or --turn-username and --turn-credential"
                ));
            }
        }
        if let TurnAuth::Secret { secret, ttl } = &turn {
            if secret.is_empty() || ttl.is_zero() {
                return Err("--turn-secret must not be empty and --turn-ttl must be more than 0".into());
            }
        }
        Ok(IceServers { urls, turn })
    }

    /// What `identity` is handed at `now`.
    pub fn for_participant(&self, identity: &str, now: SystemTime) -> Vec<IceServer> {
        let minted = match &self.turn {
            TurnAuth::Secret { secret, ttl } => Some(rest_credential(secret, identity, now + *ttl)),
            TurnAuth::Static { username, credential } => Some((username.clone(), credential.clone())),
            TurnAuth::None => None,
        };
        self.urls
            .iter()
            .map(|u| {
                let (username, credential) = match (&minted, is_turn(u)) {
                    (Some((user, pass)), true) => (Some(user.clone()), Some(pass.clone())),
                    _ => (None, None),
                };
                IceServer { urls: vec![u.clone()], username, credential }
            })
            .collect()
    }
}

fn is_turn(url: &str) -> bool {
    url.starts_with("turn:") || url.starts_with("turns:")
}

/// A TURN REST credential for `identity` that expires at `expiry`:
/// (username, password).
pub fn rest_credential(secret: &str, identity: &str, expiry: SystemTime) -> (String, String) {
    let expiry = expiry.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let username = format!("{expiry}:{identity}");
    // Invariant: HMAC takes keys of any length.
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_credentials_follow_the_turn_rest_scheme() {
        // Computed independently: printf '1700000000:alice' | openssl dgst -sha1 -hmac s3cret -binary | base64
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (user, pass) = rest_credential("s3cret", "alice", at);
        assert_eq!(user, "1700000000:alice");
        assert_eq!(pass, "TtElzSjT0GdnTQ9xdcRNxx96yQs=");
    }

    #[test]
    fn only_turn_servers_get_credentials_minted_for_the_participant() {
        let turn = TurnAuth::Secret { secret: "k".into(), ttl: Duration::from_secs(60) };
        let s = IceServers::new(vec!["stun:127.0.0.1:3478".into(), "turn:127.0.0.1:3478?transport=tcp".into()], turn)
            .unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let out = s.for_participant("bob", now);
        assert_eq!((out[0].username.as_deref(), out[0].credential.as_deref()), (None, None));
        assert_eq!(out[1].username.as_deref(), Some("1060:bob"));
        assert_eq!(out[1].credential, Some(rest_credential("k", "bob", now + Duration::from_secs(60)).1));
    }

    #[test]
    fn a_turn_server_without_credentials_or_a_bad_url_is_refused() {
        let e = IceServers::new(vec!["turn:x:3478".into()], TurnAuth::None).unwrap_err();
        assert!(e.contains("--turn-secret"), "{e}");
        assert!(IceServers::new(vec!["http://x".into()], TurnAuth::None).is_err());
        let empty = TurnAuth::Secret { secret: String::new(), ttl: DEFAULT_TURN_TTL };
        assert!(IceServers::new(vec!["turn:x".into()], empty).is_err());
    }
}
