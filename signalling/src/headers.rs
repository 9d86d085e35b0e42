//! Security headers on every response. Pages get a Content-Security-Policy
//! that runs only our own scripts (none inline) and says who may frame
//! them; nothing is sniffed as another type; no page sends a Referer, so a
//! link's token never reaches another site.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

/// The page policy for `frame_ancestors` (CSP sources, e.g. `'self'` or
/// `https://app.example.com`; `'none'` forbids framing). Styles may be
/// inline (the call view sizes its tiles from script); scripts may not.
pub fn content_security_policy(frame_ancestors: &[String]) -> Result<HeaderValue, String> {
    let ancestors = if frame_ancestors.is_empty() { "'none'".to_string() } else { frame_ancestors.join(" ") };
    if ancestors.chars().any(|c| c == ';' || c == ',' || c.is_control()) {
        return Err(format!("frame ancestors {ancestors:?}: one CSP source each, no ';' or ','"));
    }
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; \
         media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors {ancestors}"
    );
    HeaderValue::from_str(&policy).map_err(|e| format!("frame ancestors {ancestors:?}: {e}"))
}

/// Middleware: the headers above, the policy only on HTML.
pub async fn add(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    let html = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/html"));
    if html {
        h.insert(header::CONTENT_SECURITY_POLICY, state.page_policy.clone());
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_configured_ancestors_and_refuses_injection() {
        let p = content_security_policy(&["'self'".into(), "https://app.example".into()]).unwrap();
        let p = p.to_str().unwrap();
        assert!(p.contains("script-src 'self';"), "{p}");
        assert!(p.ends_with("frame-ancestors 'self' https://app.example"), "{p}");
        assert!(content_security_policy(&[]).unwrap().to_str().unwrap().ends_with("frame-ancestors 'none'"));
        assert!(content_security_policy(&["https://a; script-src *".into()]).is_err());
    }
}
