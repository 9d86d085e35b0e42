//! Agent accounts: argon2 password hashes, the signed-in session cookie and
//! the extractor that guards every agent endpoint.
//!
//! CSRF: the cookie is `SameSite=Strict` and `HttpOnly`, state-changing
//! endpoints take JSON bodies only (a cross-site form cannot send one), and a
//! present `Origin` header must match `Host`.

use sfu::ErrorCode;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use axum_extra::extract::cookie::{Cookie, SameSite};
use axum_extra::extract::CookieJar;

use crate::AppState;

pub const SESSION_COOKIE: &str = "sb_session";
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash to verify against when the email is unknown, so a wrong email
/// costs as long as a wrong password and does not reveal which accounts exist.
pub fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("no such agent").expect("argon2 works"))
}

pub fn session_cookie(token: String, secure: bool) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, token)).http_only(true).same_site(SameSite::Strict).secure(secure).path("/").build()
    // a browser-session cookie; the token inside expires after SESSION_TTL
}

pub fn cleared_cookie() -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, "")).path("/").build()
}

/// A JSON error body with a stable code: `{"error": code, "message": ...}`.
pub struct ApiError(pub StatusCode, pub ErrorCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1, "message": self.2 }))).into_response()
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!("database: {e}");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::StorageError,
            "the records could not be read or written".into(),
        )
    }
}

/// The agent making the request; rejects with 401 when not signed in.
pub struct SignedInAgent {
    pub id: i64,
    pub email: String,
    /// The server-side session it signed in with (see `Store::session_live`).
    pub sid: String,
}

impl FromRequestParts<Arc<AppState>> for SignedInAgent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        if parts.method != Method::GET && !same_origin(parts) {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                ErrorCode::CrossOrigin,
                "cross-site requests are refused".into(),
            ));
        }
        let jar = CookieJar::from_headers(&parts.headers);
        let token = jar.get(SESSION_COOKIE).map(|c| c.value().to_string()).unwrap_or_default();
        let not_signed_in =
            || ApiError(StatusCode::UNAUTHORIZED, ErrorCode::NotSignedIn, "sign in as an agent first".into());
        let session = state.keys.verify_session(&token).map_err(|_| not_signed_in())?;
        // Signed out, or the password changed since: the token alone is not enough.
        if !state.calls.store.session_live(&session.sid, session.sub).await? {
            return Err(not_signed_in());
        }
        Ok(SignedInAgent { id: session.sub, email: session.email, sid: session.sid })
    }
}

/// True when the request carries no `Origin` or one naming this host.
pub fn same_origin(parts: &Parts) -> bool {
    let Some(origin) = parts.headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else { return true };
    let host = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    origin.split_once("://").is_some_and(|(_, rest)| rest == host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("correct horse", "not a hash"));
    }
}
